//! safetensors files and model directories, valid and lying: every lie is an
//! error naming the tensor, never a panic.

use std::path::PathBuf;

use memwall_formats::safetensors::{SafeTensors, SafeTensorsDir, SafeTensorsError, StDType};
use memwall_formats::Blob;
use memwall_kernels::DType;
use proptest::prelude::*;

/// A file from a JSON header and a data section.
fn file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn parse(bytes: Vec<u8>) -> Result<SafeTensors, SafeTensorsError> {
    SafeTensors::from_blob(Blob::from_vec(bytes))
}

fn msg(header: &str, data_len: usize) -> String {
    parse(file(header, &vec![0; data_len])).expect_err("lying header accepted").to_string()
}

const VALID: &str = r#"{"__metadata__":{"format":"pt"},
    "b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},
    "a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},
    "i":{"dtype":"I64","shape":[1],"data_offsets":[32,40]}}"#;

fn valid() -> Vec<u8> {
    file(VALID, &(0u8..40).collect::<Vec<_>>())
}

#[test]
fn reads_a_valid_file_zero_copy_in_data_order() {
    let st = parse(valid()).unwrap();
    let names: Vec<&str> = st.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "i"]);
    let a = st.get("a").unwrap();
    assert_eq!((a.dtype.clone(), a.shape.clone()), (StDType::F32, vec![2, 3]));
    assert_eq!(&*a.data, &(0u8..24).collect::<Vec<_>>()[..]);
    let b = st.get("b").unwrap();
    assert_eq!(b.dtype.dtype(), Some(DType::BF16));
    assert_eq!(&*b.data, &[24, 25, 26, 27, 28, 29, 30, 31]);
    let i = st.get("i").unwrap();
    assert_eq!(i.dtype, StDType::Other("I64".into()));
    assert_eq!(i.dtype.dtype(), None);
    // Scalars, empty tensors, padding spaces after the JSON, trailing bytes.
    let odd = r#"{"s":{"dtype":"F16","shape":[],"data_offsets":[0,2]},"e":{"dtype":"F32","shape":[0,4],"data_offsets":[2,2]}}   "#;
    let st = parse(file(odd, &[1, 2, 3])).unwrap();
    assert_eq!(st.get("s").unwrap().data.len(), 2);
    assert_eq!(st.get("e").unwrap().data.len(), 0);
    assert_eq!(parse(file("{}", &[])).unwrap().tensors().len(), 0);
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = valid();
    for len in 0..bytes.len() {
        assert!(parse(bytes[..len].to_vec()).is_err(), "prefix of {len} bytes accepted");
    }
    assert!(msg(VALID, 39).contains("'i': data_offsets [32, 40] do not lie inside the 39-byte data section"));
    assert!(parse(vec![1, 0, 0]).unwrap_err().to_string().contains("too short"));
}

#[test]
fn header_length_lies() {
    let mut bytes = valid();
    bytes[..8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let e = parse(bytes).unwrap_err().to_string();
    assert!(e.starts_with("header length 4611686018427387904 exceeds the rest of the file"), "{e}");
    let mut huge = vec![b' '; 8 + (100 << 20) + 1];
    huge[..8].copy_from_slice(&((100u64 << 20) + 1).to_le_bytes());
    let e = parse(huge).unwrap_err().to_string();
    assert!(e.contains("exceeds the limit"), "{e}");
}

#[test]
fn bad_json() {
    assert!(msg("{not json", 0).starts_with("invalid JSON header"));
    assert!(msg("[1, 2]", 0).starts_with("invalid JSON header"));
    assert!(msg("{\"a\": 3}", 0).contains("tensor 'a'"));
    let e = msg(r#"{"a":{"dtype":"F32","shape":[1]}}"#, 4);
    assert!(e.contains("tensor 'a'") && e.contains("data_offsets"), "{e}");
    // Deep nesting neither overflows the stack where it is skipped nor where
    // it is parsed (serde_json's recursion limit).
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse(file(&format!("{{\"__metadata__\":{nested}}}"), &[])).is_ok());
    let e = msg(&format!("{{\"a\":{{\"shape\":{nested}}}}}"), 0);
    assert!(e.starts_with("invalid JSON header: tensor 'a'"), "{e}");
    let mut not_utf8 = file("{\"\u{e9}\":1}", &[]);
    not_utf8[11] = 0xFF;
    assert!(parse(not_utf8).is_err());
}

#[test]
fn lies_name_the_tensor() {
    let one = |dtype: &str, shape: &str, begin: u64, end: u64| {
        format!(r#"{{"w":{{"dtype":"{dtype}","shape":{shape},"data_offsets":[{begin},{end}]}}}}"#)
    };
    let e = msg(&one("F32", "[2]", 8, 0), 8);
    assert_eq!(e, "tensor 'w': data_offsets [8, 0] do not lie inside the 8-byte data section");
    let e = msg(&one("F32", "[2]", 0, 16), 8);
    assert!(e.contains("data_offsets [0, 16] do not lie inside the 8-byte"), "{e}");
    assert!(msg(&one("F32", "[2]", 0, u64::MAX), 8).contains("do not lie inside"));
    let e = msg(&one("F32", "[3]", 0, 8), 8);
    assert_eq!(e, "tensor 'w': shape [3] of F32 needs 12 bytes but data_offsets span 8");
    let e = msg(&one("F32", "[1099511627776,1099511627776]", 0, 8), 8);
    assert!(e.starts_with("tensor 'w': shape [1099511627776, 1099511627776] of F32 overflows"), "{e}");
    assert!(msg(&one("F32", "[4611686018427387904]", 0, 8), 8).contains("overflows"));
    assert!(msg(&one("F4", "[3]", 0, 1), 8).contains("not a whole number of bytes"));
    assert!(parse(file(&one("F4", "[4]", 0, 2), &[0; 2])).is_ok());
    assert_eq!(msg(&one("Q7", "[2]", 0, 8), 8), "tensor 'w': unknown dtype 'Q7'");
    assert!(msg(&one("F32", "[-1]", 0, 8), 8).starts_with("invalid JSON header"));

    let dup =
        r#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#;
    assert!(msg(dup, 2).contains("tensor 'w' appears twice"));
    let overlap =
        r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}"#;
    assert_eq!(msg(overlap, 4), "tensors 'a' and 'b' overlap in the data section");
    let contained =
        r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"b":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}"#;
    assert!(msg(contained, 8).contains("overlap"));
}

/// A fresh empty directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("memwall-st-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn shard(tensors: &[(&str, usize)]) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut offset = 0;
    for (name, n) in tensors {
        entries
            .push(format!(r#""{name}":{{"dtype":"F32","shape":[{n}],"data_offsets":[{offset},{}]}}"#, offset + 4 * n));
        offset += 4 * n;
    }
    file(&format!("{{{}}}", entries.join(",")), &vec![7; offset])
}

fn index(map: &[(&str, &str)]) -> String {
    let entries: Vec<String> = map.iter().map(|(t, f)| format!("\"{t}\":\"{f}\"")).collect();
    format!(r#"{{"metadata":{{"total_size":0}},"weight_map":{{{}}}}}"#, entries.join(","))
}

#[test]
fn sharded_directory() {
    let dir = temp_dir("sharded");
    std::fs::write(dir.join("model-00001-of-00002.safetensors"), shard(&[("a", 2), ("b", 3)])).unwrap();
    std::fs::write(dir.join("model-00002-of-00002.safetensors"), shard(&[("c", 1)])).unwrap();
    let map = [
        ("a", "model-00001-of-00002.safetensors"),
        ("b", "model-00001-of-00002.safetensors"),
        ("c", "model-00002-of-00002.safetensors"),
    ];
    std::fs::write(dir.join("model.safetensors.index.json"), index(&map)).unwrap();
    let st = SafeTensorsDir::open(&dir).unwrap();
    assert_eq!(st.len(), 3);
    assert_eq!(st.names().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(st.get("b").unwrap().shape, [3]);
    assert_eq!(st.get("c").unwrap().data.len(), 4);
    assert!(st.get("d").is_none());

    // An index entry pointing at the wrong shard.
    let wrong = [("a", "model-00002-of-00002.safetensors")];
    std::fs::write(dir.join("model.safetensors.index.json"), index(&wrong)).unwrap();
    let e = SafeTensorsDir::open(&dir).unwrap_err().to_string();
    assert_eq!(
        e,
        "tensor 'a' is listed in the index under model-00002-of-00002.safetensors but that file does not contain it"
    );

    // A tensor in two shards.
    std::fs::write(dir.join("model-00002-of-00002.safetensors"), shard(&[("a", 1)])).unwrap();
    let mut both = map[..1].to_vec();
    both.push(("a2", "model-00002-of-00002.safetensors"));
    std::fs::write(dir.join("model.safetensors.index.json"), index(&both)).unwrap();
    assert!(SafeTensorsDir::open(&dir).unwrap_err().to_string().contains("'a' appears twice"));

    // A broken shard is named in the error.
    std::fs::write(dir.join("model-00002-of-00002.safetensors"), b"short").unwrap();
    let e = SafeTensorsDir::open(&dir).unwrap_err().to_string();
    assert!(e.contains("model-00002-of-00002.safetensors: file is 5 bytes"), "{e}");

    // A missing shard.
    std::fs::write(dir.join("model.safetensors.index.json"), index(&[("x", "nope.safetensors")])).unwrap();
    assert!(SafeTensorsDir::open(&dir).unwrap_err().to_string().starts_with("cannot open"));

    std::fs::write(dir.join("model.safetensors.index.json"), "{\"weight_map\": 3}").unwrap();
    assert!(matches!(SafeTensorsDir::open(&dir), Err(SafeTensorsError::BadIndex { .. })));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shard_names_must_stay_inside_the_directory() {
    let dir = temp_dir("escape");
    for name in ["../evil.safetensors", "/etc/passwd", "sub/x.safetensors", "..", ".", "", "a\\..\\b"] {
        let json = index(&[("a", &name.replace('\\', "\\\\"))]);
        std::fs::write(dir.join("model.safetensors.index.json"), json).unwrap();
        let e = SafeTensorsDir::open(&dir).unwrap_err();
        assert!(matches!(e, SafeTensorsError::BadShardName { .. }), "{name:?}: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn single_file_and_empty_directories() {
    let dir = temp_dir("single");
    assert!(matches!(SafeTensorsDir::open(&dir), Err(SafeTensorsError::NoWeights { .. })));
    std::fs::write(dir.join("model.safetensors"), shard(&[("w", 5)])).unwrap();
    let st = SafeTensorsDir::open(&dir).unwrap();
    assert_eq!((st.len(), st.is_empty()), (1, false));
    assert_eq!(st.get("w").unwrap().data.len(), 20);
    assert_eq!(SafeTensors::open(&dir.join("model.safetensors")).unwrap().tensors().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_mutations_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = valid();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Ok(st) = parse(bytes) {
            for t in st.tensors() {
                let n: usize = t.shape.iter().product();
                prop_assert_eq!(n as u64 * t.dtype.bits(), t.data.len() as u64 * 8);
            }
        }
    }
}
