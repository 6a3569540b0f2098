//! YAML as kubectl reads it, for `inject`: documents split without being
//! touched, read with YAML 1.1 rules, and written back so that a YAML 1.1
//! reader and a YAML 1.2 reader both get the same values.
//!
//! kubectl reads manifests with go-yaml v2 (YAML 1.1) and turns them into
//! JSON: a plain `0644` is the octal int 420, a plain `yes`/`on`/`y` is
//! `true`, `1_000` is 1000, and a key `on:` becomes `"true"`. serde_yaml 0.9
//! (deprecated) and its forks read YAML 1.2 and write strings such as `on`
//! or `0644` unquoted, which a 1.1 reader takes for booleans and numbers.
//! So the reader here works on saphyr-parser's events, which keep each
//! scalar's style, and resolves plain scalars the way go-yaml v2 does; the
//! writer quotes every string that is not plainly a string in both YAML
//! versions. Untouched documents are not written at all: `inject` passes
//! their original bytes through.

use saphyr_parser::{Event, Parser, ScalarStyle, Tag};
use serde_json::{Map, Number, Value};

/// Most nodes one document may expand to through aliases; beyond it the
/// document is refused (a "billion laughs" input would otherwise exhaust
/// memory).
const MAX_NODES: usize = 1_000_000;
/// Deepest nesting accepted.
const MAX_DEPTH: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum YamlError {
    #[error("{0}")]
    Syntax(String),
    #[error("line {line}: mapping key {key:?} appears twice")]
    DuplicateKey { line: usize, key: String },
    #[error("line {0}: unknown alias")]
    UnknownAlias(usize),
    #[error("the document expands to more than {MAX_NODES} nodes through aliases")]
    TooLarge,
    #[error("the document is nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("line {line}: {value:?} is not a valid {tag}")]
    BadTagged {
        line: usize,
        value: String,
        tag: String,
    },
    #[error("more than one document")]
    Several,
}

/// One document of a stream: its exact text, and where it starts.
#[derive(Debug, PartialEq, Eq)]
pub struct RawDocument<'a> {
    pub text: &'a str,
    /// 1-based line of the document's first line in the stream.
    pub line: usize,
}

/// Splits a stream at its document markers (`---` and `...` at the start
/// of a line; YAML forbids them inside content), keeping every byte: the
/// pieces concatenated are the input. A marker line and the directives
/// before it (`%YAML`) belong to the document they open.
pub fn split_documents(text: &str) -> Vec<RawDocument<'_>> {
    let is_marker = |line: &str, m: &str| {
        line.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
    };
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut pos = 0;
    // Start of a run of directive lines that precede the next `---`.
    let mut directives: Option<(usize, usize)> = None;
    let mut ended = false; // a `...` closed the current document
    for (line_no, line) in (1..).zip(text.split_inclusive('\n')) {
        if is_marker(line, "---") {
            let (cut, cut_line) = directives.unwrap_or((pos, line_no));
            if cut > start {
                docs.push(RawDocument {
                    text: &text[start..cut],
                    line: start_line,
                });
            }
            start = cut;
            start_line = cut_line;
            directives = None;
            ended = false;
        } else if line.starts_with('%') && (ended || pos == start) {
            directives.get_or_insert((pos, line_no));
        } else if is_marker(line, "...") {
            ended = true;
        } else if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            if ended {
                // Content after `...` is a new (bare) document.
                let (cut, cut_line) = directives.unwrap_or((pos, line_no));
                docs.push(RawDocument {
                    text: &text[start..cut],
                    line: start_line,
                });
                start = cut;
                start_line = cut_line;
                ended = false;
            }
            directives = None;
        }
        pos += line.len();
    }
    if start < text.len() {
        docs.push(RawDocument {
            text: &text[start..],
            line: start_line,
        });
    }
    docs
}

/// Whether the document is closed by a `...` line.
pub fn ends_with_end_marker(text: &str) -> bool {
    text.lines().any(|l| {
        l.strip_prefix("...")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
    })
}

/// Reads one document (as split by [`split_documents`]) the way kubectl
/// does; `None` for a document with no content.
pub fn read_document(text: &str) -> Result<Option<Value>, YamlError> {
    let mut reader = Reader {
        parser: Parser::new_from_str(text),
        anchors: Vec::new(),
        nodes: 0,
    };
    let mut doc = None;
    loop {
        let (event, line) = reader.next()?;
        match event {
            Event::StreamEnd => return Ok(doc),
            Event::DocumentStart(_) => {
                if doc.is_some() {
                    return Err(YamlError::Several);
                }
                let (event, line) = reader.next()?;
                let value = match event {
                    Event::DocumentEnd => Value::Null,
                    other => {
                        let v = reader.node(other, line, 0)?;
                        let (end, _) = reader.next()?;
                        if !matches!(end, Event::DocumentEnd) {
                            return Err(YamlError::Syntax(format!(
                                "line {line}: expected the end of the document"
                            )));
                        }
                        v
                    }
                };
                doc = Some(value);
            }
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => {}
            _ => {
                return Err(YamlError::Syntax(format!(
                    "line {line}: unexpected content"
                )))
            }
        }
    }
}

struct Reader<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    /// Values by anchor id.
    anchors: Vec<Option<Value>>,
    nodes: usize,
}

impl<'a> Reader<'a> {
    fn next(&mut self) -> Result<(Event<'a>, usize), YamlError> {
        match self.parser.next_event() {
            None => Ok((Event::StreamEnd, 0)),
            Some(Ok((event, span))) => Ok((event, span.start.line())),
            Some(Err(e)) => Err(YamlError::Syntax(e.to_string())),
        }
    }

    fn count(&mut self, n: usize) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(YamlError::TooLarge);
        }
        Ok(())
    }

    fn anchor(&mut self, id: usize, value: &Value) {
        if id == 0 {
            return;
        }
        if self.anchors.len() <= id {
            self.anchors.resize(id + 1, None);
        }
        self.anchors[id] = Some(value.clone());
    }

    fn node(&mut self, event: Event<'a>, line: usize, depth: usize) -> Result<Value, YamlError> {
        if depth > MAX_DEPTH {
            return Err(YamlError::TooDeep);
        }
        self.count(1)?;
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = scalar(&text, style, tag.as_deref(), line)?;
                self.anchor(anchor, &value);
                Ok(value)
            }
            Event::Alias(id) => {
                let value = self
                    .anchors
                    .get(id)
                    .cloned()
                    .flatten()
                    .ok_or(YamlError::UnknownAlias(line))?;
                self.count(size(&value))?;
                Ok(value)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (event, line) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(event, line, depth + 1)?);
                }
                let value = Value::Array(items);
                self.anchor(anchor, &value);
                Ok(value)
            }
            Event::MappingStart(anchor, _) => {
                let value = Value::Object(self.mapping(depth)?);
                self.anchor(anchor, &value);
                Ok(value)
            }
            _ => Err(YamlError::Syntax(format!("line {line}: unexpected event"))),
        }
    }

    fn mapping(&mut self, depth: usize) -> Result<Map<String, Value>, YamlError> {
        let mut map = Map::new();
        let mut merged: Vec<Map<String, Value>> = Vec::new();
        loop {
            let (event, line) = self.next()?;
            if matches!(event, Event::MappingEnd) {
                break;
            }
            let is_merge =
                matches!(&event, Event::Scalar(t, ScalarStyle::Plain, _, None) if t == "<<");
            let key = self.node(event, line, depth + 1)?;
            let (event, vline) = self.next()?;
            let value = self.node(event, vline, depth + 1)?;
            if is_merge {
                // go-yaml v2 merges `<<: *base` and `<<: [*a, *b]`; keys
                // set in the mapping itself win, earlier sources win.
                match value {
                    Value::Object(m) => merged.push(m),
                    Value::Array(items) => {
                        for item in items {
                            match item {
                                Value::Object(m) => merged.push(m),
                                _ => {
                                    return Err(YamlError::Syntax(format!(
                                        "line {vline}: << takes mappings"
                                    )))
                                }
                            }
                        }
                    }
                    _ => {
                        return Err(YamlError::Syntax(format!(
                            "line {vline}: << takes mappings"
                        )))
                    }
                }
                continue;
            }
            let key = key_string(key);
            if map.contains_key(&key) {
                return Err(YamlError::DuplicateKey { line, key });
            }
            map.insert(key, value);
        }
        for source in merged {
            for (k, v) in source {
                map.entry(k).or_insert(v);
            }
        }
        Ok(map)
    }
}

fn size(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(size).sum::<usize>(),
        Value::Object(m) => 1 + m.values().map(size).sum::<usize>(),
        _ => 1,
    }
}

/// A key as JSON has it: sigs.k8s.io/yaml turns non-string keys into their
/// text (`on:` is the key `"true"`, `1:` the key `"1"`).
fn key_string(key: Value) -> String {
    match key {
        Value::String(s) => s,
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
    line: usize,
) -> Result<Value, YamlError> {
    if let Some(tag) = tag.filter(|t| t.is_yaml_core_schema()) {
        let bad = || YamlError::BadTagged {
            line,
            value: text.to_owned(),
            tag: format!("!!{}", tag.suffix),
        };
        return match tag.suffix.as_str() {
            "str" | "binary" | "timestamp" => Ok(Value::String(text.to_owned())),
            "null" => Ok(Value::Null),
            "bool" => resolve_bool(text).map(Value::Bool).ok_or_else(bad),
            "int" => resolve_int(text).ok_or_else(bad),
            "float" => resolve_float(text)
                .or_else(|| resolve_int(text))
                .ok_or_else(bad),
            _ => Ok(resolve_plain(text)),
        };
    }
    // A non-specific `!` tag, and every quoted or block scalar, is a string.
    if style != ScalarStyle::Plain || tag.is_some_and(|t| t.handle == "!" && t.suffix.is_empty()) {
        return Ok(Value::String(text.to_owned()));
    }
    Ok(resolve_plain(text))
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

fn resolve_bool(text: &str) -> Option<bool> {
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
    use serde_json::json;

    #[test]
    fn split_keeps_every_byte() {
        let text = "a: 1\n---\nb: 2\n--- # c\n...\n%YAML 1.1\n---\nc: '---'\n---x: 1\n";
        let docs = split_documents(text);
        let joined: String = docs.iter().map(|d| d.text).collect();
        assert_eq!(joined, text);
        let texts: Vec<&str> = docs.iter().map(|d| d.text).collect();
        assert_eq!(
            texts,
            [
                "a: 1\n",
                "---\nb: 2\n",
                "--- # c\n...\n",
                "%YAML 1.1\n---\nc: '---'\n---x: 1\n"
            ]
        );
        assert_eq!(docs[1].line, 2);
    }

    #[test]
    fn content_after_an_end_marker_is_a_new_document() {
        let text = "a: 1\n...\n# x\nb: 2\n...\n%YAML 1.1\n---\nc: 3\n";
        let texts: Vec<&str> = split_documents(text).iter().map(|d| d.text).collect();
        assert_eq!(
            texts,
            ["a: 1\n...\n# x\n", "b: 2\n...\n", "%YAML 1.1\n---\nc: 3\n"]
        );
        for t in texts {
            assert!(read_document(t).unwrap().is_some(), "{t}");
        }
    }

    /// Whether a document ends with `...` (then a rewritten one must too:
    /// directives may follow).
    #[test]
    fn end_markers_are_seen() {
        assert!(ends_with_end_marker("a: 1\n...\n# c\n"));
        assert!(!ends_with_end_marker("a: '...'\n"));
    }

    #[test]
    fn plain_scalars_resolve_as_go_yaml_v2() {
        for (text, want) in [
            ("0644", json!(420)),
            ("0o644", json!(420)),
            ("0x1F", json!(31)),
            ("0b101", json!(5)),
            ("1_000", json!(1000)),
            ("-12", json!(-12)),
            ("+12", json!(12)),
            ("0", json!(0)),
            ("1.5", json!(1.5)),
            ("1e3", json!(1000.0)),
            (".5", json!(0.5)),
            ("yes", json!(true)),
            ("On", json!(true)),
            ("n", json!(false)),
            ("OFF", json!(false)),
            ("~", json!(null)),
            ("", json!(null)),
            ("12:30", json!("12:30")),
            ("2024-01-01", json!("2024-01-01")),
            // Not octal; go-yaml v2 falls through to a float.
            ("0899", json!(899.0)),
            ("1.2.3", json!("1.2.3")),
            (".inf", json!(".inf")),
            ("nginx", json!("nginx")),
            ("18446744073709551615", json!(18446744073709551615u64)),
            ("-9223372036854775808", json!(i64::MIN)),
        ] {
            assert_eq!(resolve_plain(text), want, "{text:?}");
        }
    }

    #[test]
    fn quoted_and_tagged_scalars() {
        let doc = read_document(
            "a: '0644'\nb: \"yes\"\nc: !!str on\nd: !!int '0x10'\ne: |\n  on\non: 1\n\"on\": 2\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            doc,
            json!({"a": "0644", "b": "yes", "c": "on", "d": 16, "e": "on\n", "true": 1, "on": 2})
        );
        assert!(read_document("a: !!int x\n").is_err());
    }

    #[test]
    fn aliases_merges_and_limits() {
        let doc = read_document("base: &b {a: 1, b: 2}\nc:\n  <<: *b\n  b: 3\nl: [*b]\ny: 1\n")
            .unwrap()
            .unwrap();
        assert_eq!(doc["c"], json!({"b": 3, "a": 1}));
        assert_eq!(doc["l"][0], json!({"a": 1, "b": 2}));
        // `y` is a YAML 1.1 boolean, as a key too.
        assert_eq!(doc["true"], 1);
        assert!(matches!(
            read_document("a: 1\na: 2\n"),
            Err(YamlError::DuplicateKey { .. })
        ));
        let mut laughs = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = format!("*l{}", i - 1);
            laughs.push_str(&format!("l{i}: &l{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        assert_eq!(read_document(&laughs), Err(YamlError::TooLarge));
        let deep = format!("{}1{}", "[".repeat(400), "]".repeat(400));
        assert!(read_document(&deep).is_err());
        assert_eq!(read_document("# nothing\n").unwrap(), None);
    }

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
