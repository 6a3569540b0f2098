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
//! <decimalSI>       ::= m | "" | k | M | G | T | P | E
//! <decimalExponent> ::= "e" <signedNumber> | "E" <signedNumber>
//! ```

use std::fmt;

/// Longest accepted text; real quantities are a handful of characters and the
/// limit keeps hostile annotations from costing anything.
const MAX_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("empty quantity")]
    Empty,
    #[error("quantity longer than {MAX_LEN} characters")]
    TooLong,
    #[error("quantity {0:?} has no digits")]
    NoDigits(String),
    #[error("quantity {0:?} has an unknown suffix {1:?} (expected one of m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent e<n>)")]
    BadSuffix(String, String),
    #[error("quantity {0:?} has a malformed exponent")]
    BadExponent(String),
    #[error("quantity {0:?} is negative")]
    Negative(String),
    #[error("quantity {0:?} is out of range")]
    OutOfRange(String),
}

/// A syntactically valid quantity together with its numeric value, kept for
/// comparisons (requests must not exceed limits).
#[derive(Debug, Clone, PartialEq)]
pub struct Quantity {
    text: String,
    value: f64,
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
        let number_start = pos;
        let int_digits = count_digits(&bytes[pos..]);
        pos += int_digits;
        let mut frac_digits = 0;
        if bytes.get(pos) == Some(&b'.') {
            pos += 1;
            frac_digits = count_digits(&bytes[pos..]);
            pos += frac_digits;
        }
        if int_digits + frac_digits == 0 {
            return Err(QuantityError::NoDigits(input.to_owned()));
        }
        let number: f64 = input[number_start..pos]
            .trim_end_matches('.')
            .parse()
            .map_err(|_| QuantityError::NoDigits(input.to_owned()))?;
        let suffix = &input[pos..];
        let multiplier = suffix_multiplier(input, suffix)?;
        let mut value = number * multiplier;
        if !value.is_finite() {
            return Err(QuantityError::OutOfRange(input.to_owned()));
        }
        if negative {
            value = -value;
        }
        Ok(Self {
            text: input.to_owned(),
            value,
        })
    }

    /// Parses a quantity usable as a resource request or limit: not negative.
    pub fn parse_resource(input: &str) -> Result<Self, QuantityError> {
        let quantity = Self::parse(input)?;
        if quantity.value < 0.0 {
            return Err(QuantityError::Negative(input.to_owned()));
        }
        Ok(quantity)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value in base units (cores, bytes).
    pub fn value(&self) -> f64 {
        self.value
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

fn suffix_multiplier(input: &str, suffix: &str) -> Result<f64, QuantityError> {
    let decimal = |exp: i32| Ok(10f64.powi(exp));
    let binary = |exp: i32| Ok(2f64.powi(exp));
    match suffix {
        "" => decimal(0),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        s if s.starts_with(['e', 'E']) => {
            let exp = &s[1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::BadExponent(input.to_owned()));
            }
            let exp: i32 = exp
                .parse()
                .map_err(|_| QuantityError::OutOfRange(input.to_owned()))?;
            decimal(exp)
        }
        other => Err(QuantityError::BadSuffix(input.to_owned(), other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_grammar() {
        let cases = [
            ("0", 0.0),
            ("100m", 0.1),
            ("1", 1.0),
            ("1.5", 1.5),
            ("2.", 2.0),
            (".5", 0.5),
            ("+3", 3.0),
            ("64Mi", 64.0 * 1024.0 * 1024.0),
            ("1Gi", 1024.0 * 1024.0 * 1024.0),
            ("1k", 1000.0),
            ("1M", 1e6),
            ("1E", 1e18),
            ("12e6", 12e6),
            ("1E3", 1e3),
            ("5e-3", 5e-3),
            ("5e+3", 5e3),
        ];
        for (text, want) in cases {
            let q = Quantity::parse_resource(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(
                (q.value() - want).abs() <= want.abs() * 1e-12,
                "{text}: {} != {want}",
                q.value()
            );
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
