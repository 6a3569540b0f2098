//! Scalars as go-yaml v2 resolves them, turned into JSON the way
//! sigs.k8s.io/yaml does (kubectl's path from YAML to JSON).

use saphyr_parser::{ScalarStyle, Tag};
use serde_json::{Number, Value};

use super::{Pos, YamlError};

const CORE: &str = "tag:yaml.org,2002:";

/// The value of one scalar node. `as_key` because sigs.k8s.io/yaml turns
/// an infinite or NaN key into text, where the same value fails as JSON.
pub(super) fn scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
    at: Pos,
    as_key: bool,
) -> Result<Value, YamlError> {
    let Some(tag) = tag else {
        if style != ScalarStyle::Plain {
            return Ok(Value::String(text.to_owned()));
        }
        return plain(text, at, as_key);
    };
    // saphyr splits `!!int` into handle and suffix, and keeps `!` as an
    // empty handle with the suffix `!`: go-yaml v2 sees the whole tag.
    let full = format!("{}{}", tag.handle, tag.suffix);
    let core = full.strip_prefix(CORE);
    let bad = || YamlError::BadTagged {
        at,
        value: text.to_owned(),
        tag: format!("!!{}", core.unwrap_or_default()),
    };
    // Tags go-yaml v2 does not resolve (`!`, `!foo`, `!!map` on a scalar)
    // leave the text as a string, also an empty one and `123`.
    match core {
        Some("str") => Ok(Value::String(text.to_owned())),
        Some("binary") => decode_base64(text)
            .map(|bytes| Value::String(go_string(&bytes)))
            .ok_or_else(|| YamlError::BadTagged {
                at,
                value: text.to_owned(),
                tag: "!!binary (base64)".into(),
            }),
        Some("null") => match resolve_plain(text) {
            Value::Null => Ok(Value::Null),
            _ => Err(bad()),
        },
        Some("bool") => resolve_bool(text).map(Value::Bool).ok_or_else(bad),
        Some("int") => resolve_int(text).ok_or_else(bad),
        Some("float") => match non_finite(text) {
            Some(_) => plain(text, at, as_key),
            None => resolve_float(text)
                .or_else(|| {
                    resolve_int(text)
                        .and_then(|v| v.as_f64())
                        .and_then(Number::from_f64)
                        .map(Value::Number)
                })
                .ok_or_else(bad),
        },
        // A timestamp reaches JSON as the text it was written as.
        Some("timestamp") => Ok(Value::String(text.to_owned())),
        _ => Ok(Value::String(text.to_owned())),
    }
}

fn plain(text: &str, at: Pos, as_key: bool) -> Result<Value, YamlError> {
    match non_finite(text) {
        Some(key) if as_key => Ok(Value::String(key.to_owned())),
        Some(_) => Err(YamlError::NotJson {
            at,
            value: text.to_owned(),
        }),
        None => Ok(resolve_plain(text)),
    }
}

/// go-yaml v2's infinities and NaN, by the key sigs.k8s.io/yaml makes of
/// them.
fn non_finite(text: &str) -> Option<&'static str> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Some(".inf"),
        "-.inf" | "-.Inf" | "-.INF" => Some("-.inf"),
        ".nan" | ".NaN" | ".NAN" => Some(".nan"),
        _ => None,
    }
}

/// A key as JSON has it: sigs.k8s.io/yaml turns non-string keys into their
/// text (`on:` is the key `"true"`, `1:` the key `"1"`, and a float key
/// goes through `strconv.FormatFloat(f, 'g', -1, 32)`: `1.0:` is `"1"`,
/// `1e6:` is `"1e+06"`). JSON has no null or composite keys; kubectl
/// refuses them.
pub(super) fn key_string(key: Value, at: Pos) -> Result<String, YamlError> {
    let what = match key {
        Value::String(s) => return Ok(s),
        Value::Bool(b) => return Ok(b.to_string()),
        Value::Number(n) => {
            return Ok(match n.as_f64().filter(|_| n.is_f64()) {
                Some(f) => go_float32_g(f),
                None => n.to_string(),
            })
        }
        Value::Null => "null",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    };
    Err(YamlError::BadKey { at, what })
}

/// `strconv.FormatFloat(f, 'g', -1, 32)`: the shortest digits of the
/// float32, in exponent form when the exponent is below -4 or at least 6.
fn go_float32_g(f: f64) -> String {
    let f = f as f32;
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    let sci = format!("{f:e}");
    let (neg, sci) = match sci.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", sci.as_str()),
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let point = if rest.is_empty() { "" } else { "." };
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{neg}{first}{point}{rest}e{sign}{:02}", exp.abs());
    }
    let dp = exp + 1;
    let nd = digits.len() as i64;
    let body = if dp <= 0 {
        format!("0.{}{digits}", "0".repeat((-dp) as usize))
    } else if dp >= nd {
        format!("{digits}{}", "0".repeat((dp - nd) as usize))
    } else {
        let (int, frac) = digits.split_at(dp as usize);
        format!("{int}.{frac}")
    };
    format!("{neg}{body}")
}

/// Go's `base64.StdEncoding`, which skips line breaks and wants padding.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let clean: Vec<u8> = text
        .bytes()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    if !clean.len().is_multiple_of(4) {
        return None;
    }
    let sextet = |b: u8| -> Option<u32> {
        Some(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let chunks = clean.len() / 4;
    let mut out = Vec::with_capacity(chunks * 3);
    for (i, chunk) in clean.chunks(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|b| **b == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks) {
            return None;
        }
        let mut n = 0u32;
        for &b in &chunk[..4 - pad] {
            n = n << 6 | sextet(b)?;
        }
        n <<= 6 * pad as u32;
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    Some(out)
}

/// Bytes as Go's encoding/json writes a string: each byte that is not
/// part of valid UTF-8 becomes U+FFFD on its own.
fn go_string(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                out.push('\u{FFFD}');
                rest = bad.get(1..).unwrap_or_default();
            }
        }
    }
}

/// go-yaml v2's resolution of a plain scalar (resolve.go), as JSON.
/// Timestamps stay strings of their text.
pub fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        _ => {}
    }
    if let Some(b) = resolve_bool(text) {
        return Value::Bool(b);
    }
    if text.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '.')) {
        if let Some(v) = resolve_int(text).or_else(|| resolve_float(text)) {
            return v;
        }
    }
    Value::String(text.to_owned())
}

pub(super) fn resolve_bool(text: &str) -> Option<bool> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    }
}

/// `strconv.ParseInt(s, 0, 64)` (then ParseUint) on the text without `_`:
/// `0x1F`, `0o17`, `0b101`, and a leading `0` for octal (`0644` is 420).
fn resolve_int(text: &str) -> Option<Value> {
    let plain: String = text.chars().filter(|c| *c != '_').collect();
    let (negative, digits) = match plain.as_bytes().first() {
        Some(b'-') => (true, &plain[1..]),
        Some(b'+') => (false, &plain[1..]),
        _ => (false, plain.as_str()),
    };
    let (radix, body) = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, h)
    } else if let Some(o) = digits
        .strip_prefix("0o")
        .or_else(|| digits.strip_prefix("0O"))
    {
        (8, o)
    } else if let Some(b) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        (2, b)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(body, radix).ok()?;
    if negative {
        let v = 0i64.checked_sub_unsigned(magnitude)?;
        Some(Value::Number(v.into()))
    } else {
        Some(Value::Number(magnitude.into()))
    }
}

/// go-yaml v2's float: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`,
/// and `.inf`/`.nan`, which JSON cannot hold (kubectl fails on them too):
/// they stay strings here.
fn resolve_float(text: &str) -> Option<Value> {
    let plain: String = text.chars().filter(|c| *c != '_').collect();
    let s = plain.strip_prefix(['+', '-']).unwrap_or(&plain);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()),
        Some((int, frac)) => {
            !int.is_empty()
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|b| b.is_ascii_digit()),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let d = e.strip_prefix(['+', '-']).unwrap_or(e);
        !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
    });
    if !mantissa_ok || !exponent_ok {
        return None;
    }
    let f: f64 = plain.parse().ok()?;
    Number::from_f64(f).map(Value::Number)
}
