//! go-yaml v2 (YAML 1.1) breaks lines also at NEL (U+0085), U+2028 and
//! U+2029, where YAML 1.2 (saphyr) reads them as text. So a NEL in
//! `a: x<NEL>b: y` starts a new key for kubectl, and one in `"x<NEL>y"`
//! folds to a space.

use super::{Pos, YamlError};

/// A document's text with each NEL turned into the line feed go-yaml reads
/// it as (lines and columns stay where kubectl counts them).
pub(super) struct GoBreaks {
    chars: Vec<char>,
    /// Where the line feeds that were NELs are, in `chars`.
    nel: Vec<usize>,
}

impl GoBreaks {
    /// `None` when the text has no such breaks (the common case costs a
    /// scan). U+2028 and U+2029 break lines but stay in the text, which no
    /// YAML 1.2 input can say: refused.
    pub(super) fn new(text: &str) -> Result<Option<Self>, YamlError> {
        if !text.contains(['\u{85}', '\u{2028}', '\u{2029}']) {
            return Ok(None);
        }
        let mut chars: Vec<char> = text.chars().collect();
        let mut nel = Vec::new();
        let (mut line, mut col) = (1, 1);
        for i in 0..chars.len() {
            match chars[i] {
                '\u{85}' => {
                    chars[i] = '\n';
                    nel.push(i);
                    // go-yaml reads CR NEL as two breaks; CR LF would be one.
                    if i > 0 && chars[i - 1] == '\r' {
                        chars[i - 1] = '\n';
                    }
                }
                c @ ('\u{2028}' | '\u{2029}') => {
                    return Err(YamlError::Syntax {
                        at: Pos { line, col },
                        message: format!(
                            "U+{0:04X} is a line break to kubectl's YAML 1.1 reader but text to YAML 1.2; write it as \\u{0:04X} in double quotes",
                            c as u32
                        ),
                    });
                }
                _ => {}
            }
            let brk = chars[i] == '\n' || (chars[i] == '\r' && chars.get(i + 1) != Some(&'\n'));
            (line, col) = if brk { (line + 1, 1) } else { (line, col + 1) };
        }
        Ok(Some(GoBreaks { chars, nel }))
    }

    pub(super) fn text(&self) -> String {
        self.chars.iter().collect()
    }

    /// YAML 1.2 wants the lines of a quoted scalar indented; go-yaml does
    /// not, and a NEL inside quotes starts a line at column 0. Folding
    /// drops a continuation line's leading spaces in both, so the lines
    /// the NELs of the quoted scalar at `at` start are indented to its
    /// column. Whether anything changed (else the error stands).
    pub(super) fn indent_quoted(&mut self, at: Pos) -> bool {
        let Some(start) = self.index_of(at) else {
            return false;
        };
        let quote = self.chars[start];
        if !matches!(quote, '"' | '\'') {
            return false;
        }
        let mut end = start + 1;
        while end < self.chars.len() {
            match self.chars[end] {
                '\\' if quote == '"' => end += 1,
                '\'' if quote == '\'' && self.chars.get(end + 1) == Some(&'\'') => end += 1,
                c if c == quote => break,
                _ => {}
            }
            end += 1;
        }
        let pad = at.col - 1;
        let inside: Vec<usize> = self
            .nel
            .iter()
            .copied()
            .filter(|&i| i > start && i < end)
            .collect();
        for &i in inside.iter().rev() {
            self.chars
                .splice(i + 1..i + 1, std::iter::repeat_n(' ', pad));
            for n in self.nel.iter_mut().filter(|n| **n > i) {
                *n += pad;
            }
        }
        pad > 0 && !inside.is_empty()
    }

    fn index_of(&self, at: Pos) -> Option<usize> {
        let mut line = 1;
        let mut line_start = 0;
        for (i, c) in self.chars.iter().enumerate() {
            if line == at.line {
                break;
            }
            let brk = *c == '\n' || (*c == '\r' && self.chars.get(i + 1) != Some(&'\n'));
            if brk {
                line += 1;
                line_start = i + 1;
            }
        }
        (line == at.line)
            .then_some(line_start + at.col - 1)
            .filter(|i| *i < self.chars.len())
    }
}
