//! Strings from the kernel (comm, file names, argv, cgroup names) made safe
//! to print and exact to read back.
//!
//! Those bytes are chosen by whoever runs in the pod. An ANSI escape in a
//! file name once hid activity from a tracer's column output (Inspektor
//! Gadget, GHSA-34r5-6j7w-235f), and invalid UTF-8 turned into U+FFFD loses
//! the bytes. So every byte that is not part of printable UTF-8 is written
//! as `\xNN`, and a backslash as `\\`: the result is plain printable text in
//! a terminal and in JSON, and the original bytes follow from it.

/// `bytes` with control characters, invalid UTF-8 and a few invisible
/// format characters written as `\xNN` (one per byte), and `\` as `\\`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else if needs_escape(c) {
                let mut buf = [0; 4];
                push_hex(&mut out, c.encode_utf8(&mut buf).as_bytes());
            } else {
                out.push(c);
            }
        }
        push_hex(&mut out, chunk.invalid());
    }
    out
}

/// Control characters (C0, DEL, C1: terminals act on them); the Unicode
/// `Bidi_Control` set and the line and paragraph separators, which reorder
/// or break what a reader sees without being visible themselves; and the
/// invisible characters of width zero (soft hyphen, zero-width space,
/// non-joiner and joiner, word joiner and the invisible operators, the byte
/// order mark), which make two different names look the same. An emoji
/// joined by U+200D shows as its parts, the price of that.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || is_bidi_control(c)
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{00ad}' | '\u{200b}'..='\u{200d}' | '\u{2060}'..='\u{2064}' | '\u{feff}'
        )
}

/// The characters with the Unicode property `Bidi_Control`
/// (PropList.txt): all twelve.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    use std::fmt::Write;
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "\\x{b:02x}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_is_kept() {
        assert_eq!(escape_bytes(b"/usr/bin/python3"), "/usr/bin/python3");
        assert_eq!(
            escape_bytes("caf\u{e9} \u{1f600}".as_bytes()),
            "caf\u{e9} \u{1f600}"
        );
        assert_eq!(escape_bytes(b""), "");
    }

    #[test]
    fn control_characters_and_backslashes_are_escaped() {
        assert_eq!(escape_bytes(b"evil\x1b[2Kname"), "evil\\x1b[2Kname");
        assert_eq!(escape_bytes(b"a\nb\tc\r\x7f"), "a\\x0ab\\x09c\\x0d\\x7f");
        assert_eq!(escape_bytes(b"C:\\x1b"), "C:\\\\x1b");
        // C1 CSI, encoded in UTF-8: each of its bytes.
        assert_eq!(escape_bytes("x\u{9b}y".as_bytes()), "x\\xc2\\x9by");
        // A right-to-left override reorders what follows on screen.
        assert_eq!(escape_bytes("a\u{202e}b".as_bytes()), "a\\xe2\\x80\\xaeb");
    }

    #[test]
    fn every_bidi_control_is_escaped() {
        // Bidi_Control in Unicode 16's PropList.txt.
        let bidi = [
            0x061c, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068,
            0x2069,
        ];
        for code in bidi {
            let c = char::from_u32(code).expect("a char");
            let text = format!("a{c}b");
            let escaped = escape_bytes(text.as_bytes());
            let bytes: String = c
                .encode_utf8(&mut [0; 4])
                .bytes()
                .map(|b| format!("\\x{b:02x}"))
                .collect();
            assert_eq!(escaped, format!("a{bytes}b"), "U+{code:04X}");
        }
        assert_eq!(escape_bytes("\u{61c}".as_bytes()), "\\xd8\\x9c");
    }

    #[test]
    fn zero_width_characters_are_escaped() {
        for (c, want) in [
            ('\u{00ad}', "\\xc2\\xad"),
            ('\u{200b}', "\\xe2\\x80\\x8b"),
            ('\u{200c}', "\\xe2\\x80\\x8c"),
            ('\u{200d}', "\\xe2\\x80\\x8d"),
            ('\u{2060}', "\\xe2\\x81\\xa0"),
            ('\u{feff}', "\\xef\\xbb\\xbf"),
        ] {
            assert_eq!(
                escape_bytes(format!("s{c}h").as_bytes()),
                format!("s{want}h")
            );
        }
        // Visible neighbours stay.
        assert_eq!(
            escape_bytes("\u{2010}\u{2070}".as_bytes()),
            "\u{2010}\u{2070}"
        );
    }

    #[test]
    fn invalid_utf8_keeps_its_bytes() {
        assert_eq!(escape_bytes(b"\xff\xfeok"), "\\xff\\xfeok");
        // A sequence cut short (as at the end of a truncated buffer).
        assert_eq!(escape_bytes(b"ab\xe2\x82"), "ab\\xe2\\x82");
    }

    /// Reading back: `\\` is a backslash, `\xNN` a byte, anything else itself.
    fn unescape(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' && b.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
            } else if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("hex digits"));
                i += 4;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn every_byte_string_reads_back_exactly() {
        let samples: [&[u8]; 6] = [
            b"plain",
            b"\\x41 is not A",
            b"\x00\x01\x1b\x7f\x80\xff",
            "\u{202e}\u{9b}\u{e9}".as_bytes(),
            b"\\\\\\",
            b"\xf0\x9f\x98",
        ];
        for s in samples {
            let escaped = escape_bytes(s);
            assert!(
                escaped.chars().all(|c| !needs_escape(c)),
                "{escaped:?} still has a control character"
            );
            assert_eq!(unescape(&escaped), s, "{escaped}");
        }
        for b in 0..=255u8 {
            assert_eq!(unescape(&escape_bytes(&[b, b'z'])), [b, b'z']);
        }
    }
}
