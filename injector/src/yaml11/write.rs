//! Writing a document so that YAML 1.1 and 1.2 readers read the same
//! values.

use serde_json::{Map, Number, Value};

/// Writes `value` as a block-style YAML document that YAML 1.1 and 1.2
/// readers read as the same JSON value: a string is left plain only when
/// it can be nothing but a string in both (letters, digits, `_./-`,
/// starting with a letter, `_` or `/`, and not a boolean or null word of
/// either version); every other string is double-quoted with escapes.
pub fn write_document(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

/// Longest key written as an implicit key; YAML allows 1024 characters
/// there, longer ones need the explicit `? key` form.
const MAX_IMPLICIT_KEY: usize = 1000;

fn write_map(out: &mut String, map: &Map<String, Value>, indent: usize) {
    for (k, v) in map {
        let key = string(k);
        out.push_str(&" ".repeat(indent));
        if key.chars().count() > MAX_IMPLICIT_KEY {
            out.push_str("? ");
            out.push_str(&key);
            out.push('\n');
            out.push_str(&" ".repeat(indent));
        } else {
            out.push_str(&key);
        }
        out.push(':');
        write_value(out, v, indent, false);
    }
}

fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    for v in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        write_value(out, v, indent, true);
    }
}

/// The value after `key:` or `-`.
fn write_value(out: &mut String, v: &Value, indent: usize, in_seq: bool) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            if in_seq {
                // `- key: v` with the rest of the mapping aligned to `key`.
                let mut inner = String::new();
                write_map(&mut inner, m, indent + 2);
                out.push(' ');
                out.push_str(inner.trim_start_matches(' '));
            } else {
                out.push('\n');
                write_map(out, m, indent + 2);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_seq(out, a, if in_seq { indent + 2 } else { indent });
        }
        Value::String(text) if literal_block_fits(text) => {
            out.push_str(" |");
            let body = text.trim_end_matches('\n');
            match text.len() - body.len() {
                0 => out.push('-'),
                1 => {}
                _ => out.push('+'),
            }
            out.push('\n');
            let pad = " ".repeat(indent + 2);
            for line in text.strip_suffix('\n').unwrap_or(text).split('\n') {
                if !line.is_empty() {
                    out.push_str(&pad);
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

/// Whether a multi-line string can be written as a literal block (`|`),
/// which both YAML versions read verbatim: printable text, tabs allowed,
/// whose first line does not start with a space or a line break (the
/// indentation would be misread) and with no carriage return.
fn literal_block_fits(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\n'])
        && s.chars().all(|c| c == '\n' || c == '\t' || printable(c))
        && s.split('\n')
            .all(|line| !line.starts_with('\t') || !line.trim().is_empty())
}

fn inline(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Integers as they are; floats with a point and a signed exponent
/// (`1.0e+300`), since YAML 1.1 reads `1e300` as a string.
fn number(n: &Number) -> String {
    let text = n.to_string();
    if n.is_f64() {
        let (mantissa, exponent) = match text.split_once(['e', 'E']) {
            Some((m, e)) => (m.to_owned(), Some(e.to_owned())),
            None => (text.clone(), None),
        };
        let mantissa = if mantissa.contains('.') {
            mantissa
        } else {
            format!("{mantissa}.0")
        };
        return match exponent {
            Some(e) if e.starts_with(['+', '-']) => format!("{mantissa}e{e}"),
            Some(e) => format!("{mantissa}e+{e}"),
            None => mantissa,
        };
    }
    text
}

fn plain_is_safe(s: &str) -> bool {
    const WORDS: [&str; 26] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~",
    ];
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        && !WORDS.contains(&s)
}

/// A string scalar: plain when safe, else double-quoted. The escapes are
/// JSON's, which YAML's double-quoted style shares, plus `\uXXXX` for the
/// line separators and non-printable characters that YAML would fold or
/// refuse.
fn string(s: &str) -> String {
    if plain_is_safe(s) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if printable(c) => out.push(c),
            c if (c as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// YAML's printable set (c-printable), without the line breaks U+0085,
/// U+2028, U+2029 (YAML 1.1 folds them) and the BOM.
fn printable(c: char) -> bool {
    matches!(c as u32, 0x20..=0x7E | 0xA0..=0x2027 | 0x202A..=0xD7FF | 0xE000..=0xFEFE | 0xFF00..=0xFFFD | 0x10000..=0x10FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml11::read_document;
    use serde_json::json;

    #[test]
    fn written_strings_keep_their_type() {
        let v = json!({
            "plain": "nginx", "yes": "yes", "on": "on", "oct": "0644", "time": "12:30",
            "num": "1_000", "date": "2024-01-01", "empty": "", "null": "null", "sp": "a b",
            "colon": "a: b", "hash": "# x", "dash": "- x", "star": "*x", "nl": "a\nb",
            "nl1": "a\n\n  b\tc\n", "nl2": "x\n\n\n", "nl3": " lead\nx", "nl4": "\nfirst",
            "seqnl": ["one\ntwo", {"k": "p\nq\n"}],
            "long": {"k".repeat(1100): {"x": 1}, "\u{19}".repeat(300): "v"},
            "sep": "a\u{2028}b", "bell": "\u{7}", "mode": 420, "f": 1e300, "half": 0.5,
            "b": true, "n": null, "list": [{"name": "a", "v": [1, "2"]}, [], {}], "m": {}
        });
        let text = write_document(&v);
        assert!(text.contains("\"yes\": \"yes\""), "{text}");
        assert!(text.contains("oct: \"0644\""), "{text}");
        assert!(text.contains("mode: 420"), "{text}");
        assert!(text.contains("f: 1.0e+300"), "{text}");
        assert!(text.contains("plain: nginx"), "{text}");
        let back = read_document(&text).unwrap().unwrap();
        assert_eq!(back, v, "{text}");
    }
}
