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
//!
//! Where sigs.k8s.io/yaml's turn from YAML to JSON matters (float and bool
//! keys, null keys, `!!binary`, a repeated key) the reader follows it too:
//! `tests/kubectl_yaml.rs` compares it with kubectl's own code.

mod read;
mod write;

pub use read::{read_document, resolve_plain, Pos, YamlError};
pub use write::write_document;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
