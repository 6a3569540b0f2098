//! Reading one document with go-yaml v2's YAML 1.1 rules, from
//! saphyr-parser's events (which keep each scalar's style).

mod breaks;
mod scalar;

use saphyr_parser::{Event, Parser, ScalarStyle};
use serde_json::{Map, Value};

pub use scalar::resolve_plain;
use scalar::{key_string, scalar};

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
    #[error("{at}: a mapping key that is {what}: JSON keys are strings, and kubectl refuses it")]
    BadKey { at: Pos, what: &'static str },
    #[error(
        "{at}: {value:?} is infinite or not a number, which JSON cannot hold (kubectl refuses it)"
    )]
    NotJson { at: Pos, value: String },
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
            | YamlError::BadKey { at, .. }
            | YamlError::NotJson { at, .. }
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
    let Some(mut breaks) = breaks::GoBreaks::new(text)? else {
        return read_text(text);
    };
    // Each retry indents one quoted scalar's lines; a few are plenty for
    // a real manifest, and the bound keeps a hostile one from costing a
    // parse per NEL.
    for _ in 0..16 {
        match read_text(&breaks.text()) {
            Err(YamlError::Syntax { at, message })
                if message.contains("invalid indentation in quoted scalar")
                    && breaks.indent_quoted(at) => {}
            other => return other,
        }
    }
    read_text(&breaks.text())
}

fn read_text(text: &str) -> Result<Option<Value>, YamlError> {
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
                        let v = reader.node(other, line, 0, false)?;
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

    fn node(
        &mut self,
        event: Event<'a>,
        line: Pos,
        depth: usize,
        as_key: bool,
    ) -> Result<Value, YamlError> {
        if depth > MAX_DEPTH {
            return Err(YamlError::TooDeep);
        }
        self.count(1)?;
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = scalar(&text, style, tag.as_deref(), line, as_key)?;
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
                    items.push(self.node(event, line, depth + 1, false)?);
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
        loop {
            let (event, line) = self.next()?;
            if matches!(event, Event::MappingEnd) {
                break;
            }
            let is_merge =
                matches!(&event, Event::Scalar(t, ScalarStyle::Plain, _, None) if t == "<<");
            let key = self.node(event, line, depth + 1, true)?;
            let (event, vline) = self.next()?;
            let value = self.node(event, vline, depth + 1, false)?;
            if is_merge {
                // go-yaml v2 merges `<<: *base` and `<<: [*a, *b]` where
                // the `<<` stands: its keys replace those set before it,
                // later keys replace its, and earlier sources win.
                let sources = match value {
                    Value::Object(m) => vec![m],
                    Value::Array(items) => items
                        .into_iter()
                        .map(|item| match item {
                            Value::Object(m) => Ok(m),
                            _ => Err(syntax(vline, "<< takes mappings")),
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(syntax(vline, "<< takes mappings")),
                };
                for source in sources.into_iter().rev() {
                    map.extend(source);
                }
                continue;
            }
            // kubectl reads without go-yaml's strict mode: a repeated key
            // keeps its last value.
            map.insert(key_string(key, line)?, value);
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

#[cfg(test)]
mod tests;
