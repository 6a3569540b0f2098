//! Editing the tracer's arguments: an overridden flag replaces the
//! configured one, since the tracer refuses a flag given twice.

/// The value of `--flag=V` or `--flag V` in `args` (the last one).
pub fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let mut found = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == flag {
            found = it.next().cloned();
        } else if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            found = Some(v.to_owned());
        }
    }
    found
}

pub fn has_flag(args: &[String], flag: &str) -> bool {
    args.iter().any(|a| a == flag)
}

/// `args` without any occurrence of `flag` (`--flag`, `--flag=V`, and with
/// `takes_value` also `--flag V`): the tracer refuses a flag given twice.
pub fn without_flag(args: &[String], flag: &str, takes_value: bool) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == flag {
            if takes_value {
                it.next();
            }
        } else if !a
            .strip_prefix(flag)
            .is_some_and(|rest| rest.starts_with('='))
        {
            out.push(a.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_editing() {
        let args: Vec<String> = [
            "--log-level",
            "debug",
            "--log-level=x",
            "--log-levels",
            "--threads",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(flag_value(&args, "--log-level").as_deref(), Some("x"));
        assert_eq!(
            without_flag(&args, "--log-level", true),
            ["--log-levels", "--threads"]
        );
        assert_eq!(without_flag(&args, "--threads", false).len(), 4);
    }
}
