//! The grammar of each setting's annotation value.

use crate::quantity::Quantity;

pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

pub fn parse_count(text: &str) -> Result<u32, String> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a whole number of events per second (0: no cap)".into());
    }
    text.parse()
        .map_err(|_| format!("at most {} events per second", u32::MAX))
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// A subset of tracing's filter syntax that the tracer accepts for sure:
/// `info`, or `warn,linnix_sidecar=debug`.
pub fn parse_log_level(text: &str) -> Result<String, String> {
    // Short: the API server may truncate warnings over 256 characters.
    const WANT: &str = "expected trace, debug, info, warn, error, off or target=level directives";
    if text.is_empty() || text.len() > 128 {
        return Err(WANT.into());
    }
    let is_level = |s: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s));
    let is_target = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-'))
    };
    for directive in text.split(',') {
        let ok = match directive.split_once('=') {
            Some((target, level)) => is_target(target) && is_level(level),
            None => is_level(directive),
        };
        if !ok {
            return Err(WANT.into());
        }
    }
    Ok(text.to_owned())
}

pub fn parse_limit(text: &str) -> Result<Quantity, String> {
    let q = Quantity::parse_resource(text).map_err(|e| e.to_string())?;
    if !q.is_zero() {
        Ok(q)
    } else {
        Err("the limit must be greater than zero".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_grammar() {
        for ok in [
            "info",
            "WARN",
            "off",
            "warn,linnix_sidecar=debug",
            "a::b=trace",
        ] {
            assert!(parse_log_level(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "loud",
            "info,",
            "=info",
            "x=",
            "a b=info",
            "x=info=debug",
            "{x}=info",
        ] {
            assert!(parse_log_level(bad).is_err(), "{bad}");
        }
        assert!(parse_log_level(&"a".repeat(200)).is_err());
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("0"), Ok(0));
        assert_eq!(parse_count("4294967295"), Ok(u32::MAX));
        for bad in ["", "+1", "1.5", "4294967296", "99999999999", " 1", "1e3"] {
            assert!(parse_count(bad).is_err(), "{bad}");
        }
    }
}
