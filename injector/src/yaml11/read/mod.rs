//! Reading one document with go-yaml v2's YAML 1.1 rules, from
//! saphyr-parser's events (which keep each scalar's style).

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
    #[error("{at}: {message}")]
    Syntax { at: Pos, message: String },
    #[error("{at}: mapping key {key:?} appears twice")]
    DuplicateKey { at: Pos, key: String },
    #[error("{0}: unknown alias")]
    UnknownAlias(Pos),
    #[error("the document expands to more than {MAX_NODES} nodes through aliases")]
    TooLarge,
    #[error("the document is nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("{at}: {value:?} is not a valid {tag}")]
    BadTagged { at: Pos, value: String, tag: String },
    #[error("more than one document")]
    Several,
}

/// A place in the input: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} column {}", self.line, self.col)
    }
}

fn syntax(at: Pos, message: &str) -> YamlError {
    YamlError::Syntax {
        at,
        message: message.to_owned(),
    }
}

impl YamlError {
    /// The same error with its lines counted from the stream's start, for
    /// a document whose first line is `first_line` of the stream.
    pub fn in_stream(mut self, first_line: usize) -> Self {
        let shift = first_line.saturating_sub(1);
        match &mut self {
            YamlError::Syntax { at, .. }
            | YamlError::DuplicateKey { at, .. }
            | YamlError::UnknownAlias(at)
            | YamlError::BadTagged { at, .. } => at.line += shift,
            YamlError::TooLarge | YamlError::TooDeep | YamlError::Several => {}
        }
        self
    }
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
                            return Err(syntax(line, "expected the end of the document"));
                        }
                        v
                    }
                };
                doc = Some(value);
            }
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => {}
            _ => return Err(syntax(line, "unexpected content")),
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
    fn next(&mut self) -> Result<(Event<'a>, Pos), YamlError> {
        match self.parser.next_event() {
            None => Ok((Event::StreamEnd, Pos { line: 0, col: 0 })),
            Some(Ok((event, span))) => Ok((
                event,
                Pos {
                    line: span.start.line(),
                    col: span.start.col() + 1,
                },
            )),
            Some(Err(e)) => Err(syntax(
                Pos {
                    line: e.marker().line(),
                    col: e.marker().col() + 1,
                },
                e.info(),
            )),
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

    fn node(&mut self, event: Event<'a>, line: Pos, depth: usize) -> Result<Value, YamlError> {
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
            _ => Err(syntax(line, "unexpected event")),
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
                                _ => return Err(syntax(vline, "<< takes mappings")),
                            }
                        }
                    }
                    _ => return Err(syntax(vline, "<< takes mappings")),
                }
                continue;
            }
            let key = key_string(key);
            if map.contains_key(&key) {
                return Err(YamlError::DuplicateKey { at: line, key });
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
    line: Pos,
) -> Result<Value, YamlError> {
    if let Some(tag) = tag.filter(|t| t.is_yaml_core_schema()) {
        let bad = || YamlError::BadTagged {
            at: line,
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

#[cfg(test)]
mod tests;
