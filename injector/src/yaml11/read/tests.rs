//! Unit tests of reading YAML 1.1.

use super::*;
use serde_json::json;

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
    // As kubectl reads (go-yaml v2, not strict): the last value wins.
    assert_eq!(
        read_document("a: 1\na: 2\n").unwrap().unwrap(),
        json!({"a": 2})
    );
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
fn keys_and_tags_as_sigs_k8s_io_yaml_writes_them() {
    let doc = read_document(
        "1.0: a\n1e6: b\n1.5e-5: c\n.Inf: d\n0.1: e\nbin: !!binary aGk=\nbang: ! 1\nc: !x\n",
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        doc,
        json!({"1": "a", "1e+06": "b", "1.5e-05": "c", ".inf": "d", "0.1": "e",
               "bin": "hi", "bang": "1", "c": ""})
    );
    for bad in [
        "~: 1\n",
        "[a]: 1\n",
        "a: .inf\n",
        "a: !!null x\n",
        "a: !!binary x\n",
    ] {
        let e = read_document(bad).unwrap_err().to_string();
        assert!(e.starts_with("line 1 column "), "{bad:?}: {e}");
    }
}

#[test]
fn nel_breaks_lines_as_in_yaml_1_1() {
    let doc = read_document("a: x\u{85}b: \"c\u{85}d\"\n")
        .unwrap()
        .unwrap();
    assert_eq!(doc, json!({"a": "x", "b": "c d"}));
    let e = read_document("a: \"x\u{2028}\"\n").unwrap_err().to_string();
    assert!(e.starts_with("line 1 column 6: U+2028"), "{e}");
}

/// Mixes of the pieces the go-yaml emulation handles specially never
/// panic (NEL re-indentation, tags, keys).
#[test]
fn odd_mixes_do_not_panic() {
    const PIECES: [&str; 16] = [
        "\u{85}",
        "\"",
        "'",
        "\n",
        "  ",
        "a",
        ": ",
        "- ",
        "!!binary ",
        "\r",
        "\\",
        "[",
        "{",
        "~",
        "! ",
        "1.5e3",
    ];
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..20_000 {
        let mut text = String::new();
        for _ in 0..(seed % 24) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(PIECES[(seed % PIECES.len() as u64) as usize]);
        }
        let _ = read_document(&text);
        seed = seed.wrapping_add(1);
    }
}
