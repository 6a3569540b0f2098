//! `inject` on a YAML stream: any text gives output or a clear error, never
//! a panic; the output, injected again, comes out unchanged, and every one
//! of its documents reads back.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use linnix_injector::config::{Config, Sidecar};
use linnix_injector::offline::{inject_yaml, Options};
use linnix_injector::yaml11;

fn sidecar() -> &'static Sidecar {
    static S: OnceLock<Sidecar> = OnceLock::new();
    S.get_or_init(|| Config::default().sidecar.validate(None).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for inject_all in [false, true] {
        let opts = Options {
            sidecar: sidecar(),
            inject_all,
        };
        let Ok(out) = inject_yaml(text, &opts) else {
            continue;
        };
        for doc in yaml11::split_documents(&out) {
            if let Err(e) = yaml11::read_document(doc.text) {
                panic!("output document does not read back: {e}\n{out}");
            }
        }
        match inject_yaml(&out, &opts) {
            Ok(again) => assert_eq!(again, out, "injecting the output changed it"),
            Err(e) => panic!("output is refused: {e}\n{out}"),
        }
    }
});
