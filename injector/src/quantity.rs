//! Kubernetes resource quantities (`100m`, `64Mi`, `1.5G`, `5e3`).
//!
//! `k8s_openapi`'s `Quantity` is an unchecked string, so overrides taken from pod
//! annotations are checked here against the apimachinery grammar before they
//! reach a container spec: a bad value would otherwise make the API server
//! reject the whole (already mutated) pod.
//!
//! ```text
//! <quantity>        ::= <signedNumber><suffix>
//! <signedNumber>    ::= <number> | <sign><number>
//! <sign>            ::= "+" | "-"
//! <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
//! <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI>
//! <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei
//! <decimalSI>       ::= n | u | m | "" | k | M | G | T | P | E
//! <decimalExponent> ::= "e" <signedNumber> | "E" <signedNumber>
//! ```

use std::cmp::Ordering;
use std::fmt;

use num_bigint::BigInt;
use num_traits::{Signed, ToPrimitive, Zero};

/// Longest accepted text; real quantities are a handful of characters and the
/// limit keeps hostile annotations from costing anything.
const MAX_LEN: usize = 64;

/// Nano units per base unit: apimachinery keeps quantities to 10^-9, rounding
/// any finer value up (`amount.Round(amount, Nano.infScale(), inf.RoundUp)`
/// in `ParseQuantity`), so that a tiny request is never rounded to nothing.
const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// Largest magnitude, in base units, that apimachinery stores (`maxAllowed`,
/// `math.MaxInt64`); it caps anything larger. Such values are refused here:
/// no tracer limit is meant to be 9 exabytes.
const MAX_UNITS: i128 = i64::MAX as i128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("empty quantity")]
    Empty,
    #[error("quantity longer than {MAX_LEN} characters")]
    TooLong,
    #[error("quantity {0:?} has no digits")]
    NoDigits(String),
    #[error("quantity {0:?} has an unknown suffix {1:?} (expected one of n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent e<n>)")]
    BadSuffix(String, String),
    #[error("quantity {0:?} has a malformed exponent")]
    BadExponent(String),
    #[error("quantity {0:?} is negative")]
    Negative(String),
    #[error("quantity {0:?} is out of range")]
    OutOfRange(String),
}

/// A syntactically valid quantity together with its exact amount, kept for
/// comparisons (requests must not exceed limits). The amount is what the
/// API server stores: nano units, finer fractions rounded up, so that
/// comparisons here agree with the API server's validation to the last nano.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity {
    text: String,
    nanos: i128,
}

impl Quantity {
    /// Parses any quantity the API server accepts, negative ones included.
    pub fn parse(input: &str) -> Result<Self, QuantityError> {
        if input.is_empty() {
            return Err(QuantityError::Empty);
        }
        if input.len() > MAX_LEN {
            return Err(QuantityError::TooLong);
        }
        let bytes = input.as_bytes();
        let mut pos = 0;
        let negative = match bytes.first() {
            Some(b'-') => {
                pos += 1;
                true
            }
            Some(b'+') => {
                pos += 1;
                false
            }
            _ => false,
        };
        let int_start = pos;
        let int_digits = count_digits(&bytes[pos..]);
        pos += int_digits;
        let int_part = &input[int_start..pos];
        let mut frac_part = "";
        if bytes.get(pos) == Some(&b'.') {
            pos += 1;
            let frac_digits = count_digits(&bytes[pos..]);
            frac_part = &input[pos..pos + frac_digits];
            pos += frac_digits;
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(QuantityError::NoDigits(input.to_owned()));
        }
        let suffix = &input[pos..];
        let (exp10, exp2) = suffix_exponents(input, suffix)?;
        let digits: String = [int_part, frac_part].concat();
        let unscaled: BigInt = digits
            .parse()
            .map_err(|_| QuantityError::NoDigits(input.to_owned()))?;
        // The amount is unscaled * 2^exp2 * 10^(exp10 - frac digits), in nanos.
        let scale = i64::from(exp10) - frac_part.len() as i64 + 9;
        let nanos = scaled_nanos(unscaled << exp2, scale)
            .filter(|n| *n <= MAX_UNITS * NANOS_PER_UNIT)
            .ok_or_else(|| QuantityError::OutOfRange(input.to_owned()))?;
        Ok(Self {
            text: input.to_owned(),
            nanos: if negative { -nanos } else { nanos },
        })
    }

    /// Parses a quantity usable as a resource request or limit: not negative.
    pub fn parse_resource(input: &str) -> Result<Self, QuantityError> {
        let quantity = Self::parse(input)?;
        if quantity.nanos < 0 {
            return Err(QuantityError::Negative(input.to_owned()));
        }
        Ok(quantity)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Compares the amounts exactly, as the API server does (`100m` equals
    /// `0.1`; the texts may differ).
    pub fn cmp_amount(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Whether the amount is a whole number of units: memory must be whole
    /// bytes (the API server warns about `0.1` or `1500m` of memory, and
    /// rounds it).
    pub fn is_whole(&self) -> bool {
        self.nanos % NANOS_PER_UNIT == 0
    }

    /// The amount in nano units (10^-9 cores, 10^-9 bytes).
    pub fn nanos(&self) -> i128 {
        self.nanos
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// `magnitude * 10^scale`, rounded up to an integer; `None` when it is far
/// beyond any value [`Quantity`] keeps (the caller checks the exact bound).
fn scaled_nanos(magnitude: BigInt, scale: i64) -> Option<i128> {
    if magnitude.is_zero() {
        return Some(0);
    }
    // At most 63 digits times 2^60 is below 10^83: beyond these exponents
    // the result is certainly huge, or certainly a fraction of one nano.
    if scale > 40 {
        return None;
    }
    if scale < -100 {
        return Some(1);
    }
    let exact = if scale >= 0 {
        magnitude * BigInt::from(10u8).pow(scale as u32)
    } else {
        let divisor = BigInt::from(10u8).pow(scale.unsigned_abs() as u32);
        let (q, r) = (&magnitude / &divisor, &magnitude % &divisor);
        if r.is_positive() {
            q + 1
        } else {
            q
        }
    };
    exact.to_i128()
}

/// The decimal and binary exponents a suffix stands for.
fn suffix_exponents(input: &str, suffix: &str) -> Result<(i32, u32), QuantityError> {
    Ok(match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        s if s.starts_with(['e', 'E']) => {
            let exp = &s[1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::BadExponent(input.to_owned()));
            }
            let exp: i32 = exp
                .parse()
                .map_err(|_| QuantityError::OutOfRange(input.to_owned()))?;
            (exp, 0)
        }
        other => return Err(QuantityError::BadSuffix(input.to_owned(), other.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_grammar() {
        const G: i128 = 1_000_000_000;
        let cases = [
            ("0", 0),
            ("100m", G / 10),
            ("1", G),
            ("1.5", 3 * G / 2),
            ("2.", 2 * G),
            (".5", G / 2),
            ("+3", 3 * G),
            ("64Mi", (64 << 20) * G),
            ("1Gi", (1 << 30) * G),
            ("1k", 1000 * G),
            ("1M", 1_000_000 * G),
            ("1E", 1_000_000_000_000_000_000 * G),
            ("12e6", 12_000_000 * G),
            ("1E3", 1000 * G),
            ("5e-3", 5_000_000),
            ("5e+3", 5000 * G),
            ("250u", 250_000),
            ("5n", 5),
            ("1500n", 1500),
        ];
        for (text, want) in cases {
            let q = Quantity::parse_resource(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(q.nanos(), want, "{text}");
            assert_eq!(q.as_str(), text);
        }
    }

    #[test]
    fn rejects_what_the_api_server_rejects() {
        for text in [
            "",
            "m",
            "Mi",
            ".",
            "-",
            "1.2.3",
            "10MB",
            "1mi",
            "1KI",
            "1 Mi",
            " 1",
            "1e",
            "1e+",
            "1e1.5",
            "0x10",
            "1,5",
            "ten",
            "1Mi ",
            "∞",
            "1e99999999999",
        ] {
            assert!(
                Quantity::parse(text).is_err(),
                "{text:?} should be rejected"
            );
        }
    }

    #[test]
    fn amounts_compare_exactly() {
        let q = |t: &str| Quantity::parse(t).unwrap();
        assert_eq!(q("100m").cmp_amount(&q("0.1")), Ordering::Equal);
        assert_eq!(q("1Ki").cmp_amount(&q("1024")), Ordering::Equal);
        assert_eq!(q("1e3").cmp_amount(&q("1k")), Ordering::Equal);
        // A float would call these equal.
        assert_eq!(
            q("33554431.999999999").cmp_amount(&q("32Mi")),
            Ordering::Less
        );
        assert_eq!(
            q("9007199254740993").cmp_amount(&q("9007199254740992")),
            Ordering::Greater
        );
        // Finer than a nano rounds up, as apimachinery does.
        assert_eq!(
            q("33554431.9999999991").cmp_amount(&q("32Mi")),
            Ordering::Equal
        );
        assert_eq!(q("1e-20").nanos(), 1);
        assert_eq!(q("0.0000000001").nanos(), 1);
        assert_eq!(q("-1e-20").nanos(), -1);
        assert!(q("0.000").is_zero() && q("-0").is_zero() && q("0e99").is_zero());
        assert!(Quantity::parse_resource("-0").is_ok());
        assert_eq!(q("1.5Gi").nanos(), 3 * (1 << 29) * 1_000_000_000);
        assert_eq!(q("0.5Ki").nanos(), 512 * 1_000_000_000);
        // The largest amount apimachinery keeps, and one more.
        assert_eq!(
            q("9223372036854775807").nanos(),
            i64::MAX as i128 * 1_000_000_000
        );
        for big in ["9223372036854775808", "8Ei", "1e19", "10E"] {
            assert!(
                matches!(Quantity::parse(big), Err(QuantityError::OutOfRange(_))),
                "{big}"
            );
        }
        assert!(Quantity::parse("7.999Ei").is_ok());
        let digits = format!("0.{}1", "0".repeat(60));
        assert_eq!(q(&digits).nanos(), 1);
        assert_eq!(q("1e-2147483648").nanos(), 1);
        assert!(matches!(
            Quantity::parse("1e2147483647"),
            Err(QuantityError::OutOfRange(_))
        ));
    }

    #[test]
    fn whole_units() {
        let q = |t: &str| Quantity::parse(t).unwrap();
        for whole in ["1", "64Mi", "1.5Gi", "1000m", "2e3", "0", "1000000000n"] {
            assert!(q(whole).is_whole(), "{whole}");
        }
        for fraction in ["0.1", "1500m", "0.5", "1e-3", "5n", "250u"] {
            assert!(!q(fraction).is_whole(), "{fraction}");
        }
    }

    #[test]
    fn rejects_negative_resources() {
        assert!(Quantity::parse("-1").is_ok());
        assert_eq!(
            Quantity::parse_resource("-100m"),
            Err(QuantityError::Negative("-100m".into()))
        );
    }

    #[test]
    fn rejects_overlong_input() {
        let long = "1".repeat(MAX_LEN + 1);
        assert_eq!(Quantity::parse(&long), Err(QuantityError::TooLong));
    }

    #[test]
    fn rejects_overflow() {
        assert!(matches!(
            Quantity::parse("9e400"),
            Err(QuantityError::OutOfRange(_))
        ));
    }
}
