//! GGUF reader on arbitrary bytes: opening never panics, and whatever opens
//! hands out only in-file tensor data; the typed model config and the
//! embedded tokenizer built from hostile metadata never panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memwall_formats::gguf::GgufFile;
use memwall_formats::tokenizer::{EncodeOptions, Tokenizer};
use memwall_formats::Blob;
use memwall_model::ModelConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = GgufFile::from_blob(Blob::from_vec(data.to_vec())) else {
        return;
    };
    for t in g.tensors() {
        let bytes = g.tensor_data(t);
        assert_eq!(bytes.len(), t.n_bytes, "tensor '{}'", t.name);
    }
    for (key, value) in g.metadata() {
        assert!(g.get(key).is_some());
        let _ = value.to_string();
    }
    let _ = ModelConfig::from_gguf(&g);
    if let Ok(tok) = Tokenizer::from_gguf(&g) {
        for parse_special in [false, true] {
            let ids = tok.encode("Hello world! <s> 123 héllo\n\t", EncodeOptions { add_bos: true, parse_special });
            let _ = tok.decode(&ids);
        }
        let _ = tok.decode(&[0, 1, 2, 3, u32::MAX]);
    }
});
