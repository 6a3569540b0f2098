//! Memory sizes as Kubernetes writes them: `64M` is 64*10^6 bytes, `64Mi` is
//! 64*2^20, a bare number is bytes.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SizeError {
    #[error("empty size")]
    Empty,
    #[error(
        "{0:?} is not a size: expected bytes or a number with a unit (k, M, G, T, Ki, Mi, Gi, Ti)"
    )]
    Invalid(String),
    #[error("{0:?} is too large")]
    Overflow(String),
}

pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(SizeError::Invalid(input.to_owned()));
    }
    let multiplier: u64 = match unit.strip_suffix('B').unwrap_or(unit) {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return Err(SizeError::Invalid(input.to_owned())),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| SizeError::Overflow(input.to_owned()))?;
    value
        .checked_mul(multiplier)
        .ok_or_else(|| SizeError::Overflow(input.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64M"), Ok(64_000_000));
        assert_eq!(parse_size("64Mi"), Ok(64 * 1024 * 1024));
        assert_eq!(parse_size("64MiB"), Ok(64 * 1024 * 1024));
        assert_eq!(parse_size("1G"), Ok(1_000_000_000));
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
        assert_eq!(parse_size("512k"), Ok(512_000));
        assert_eq!(parse_size(" 2Ki "), Ok(2048));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        for bad in ["M", "-1", "1.5G", "64X", "64 M", "64Mib", "64BB", "0x10"] {
            assert!(parse_size(bad).is_err(), "{bad} accepted");
        }
        assert!(matches!(
            parse_size("99999999999999999999"),
            Err(SizeError::Overflow(_))
        ));
        assert!(matches!(
            parse_size("20000000Ti"),
            Err(SizeError::Overflow(_))
        ));
    }
}
