//! Round trips through the writer and reader, and malformed files: every
//! one must be an error that names the problem, never a panic.

use memwall_kernels::DType;
use proptest::prelude::*;

use super::*;

fn open(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
    GgufFile::from_blob(Blob::from_vec(bytes))
}

fn err(bytes: Vec<u8>) -> GgufError {
    open(bytes).expect_err("malformed file was accepted")
}

/// A small valid file: every value type, a nested array, two tensors.
fn sample() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama").unwrap();
    w.add_metadata("u8", 7u8).unwrap();
    w.add_metadata("i8", -7i8).unwrap();
    w.add_metadata("u16", 700u16).unwrap();
    w.add_metadata("i16", -700i16).unwrap();
    w.add_metadata("u32", 70_000u32).unwrap();
    w.add_metadata("i32", -70_000i32).unwrap();
    w.add_metadata("u64", u64::MAX).unwrap();
    w.add_metadata("i64", i64::MIN).unwrap();
    w.add_metadata("f32", 1.5f32).unwrap();
    w.add_metadata("f64", -2.25f64).unwrap();
    w.add_metadata("bool", true).unwrap();
    w.add_metadata("tokens", vec!["a", "bc", ""]).unwrap();
    w.add_metadata("nested", Value::Array(vec![vec![1i32, 2].into(), vec!["x"].into(), Value::Array(vec![])])).unwrap();
    w.add_tensor("a", &[4, 2], GgmlType::F32, &[1u8; 32]).unwrap();
    w.add_tensor("b", &[32], GgmlType::Q8_0, &[2u8; 34]).unwrap();
    w
}

#[test]
fn round_trip_every_value_type() {
    let w = sample();
    let f = open(w.to_bytes()).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.metadata().len(), 14);
    let keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys[..3], ["general.architecture", "u8", "i8"]);
    assert_eq!(f.get("general.architecture").and_then(Value::as_str), Some("llama"));
    assert_eq!(f.get("u8"), Some(&Value::U8(7)));
    assert_eq!(f.get("i8"), Some(&Value::I8(-7)));
    assert_eq!(f.get("u16"), Some(&Value::U16(700)));
    assert_eq!(f.get("i16"), Some(&Value::I16(-700)));
    assert_eq!(f.get("u32"), Some(&Value::U32(70_000)));
    assert_eq!(f.get("i32"), Some(&Value::I32(-70_000)));
    assert_eq!(f.get("u64"), Some(&Value::U64(u64::MAX)));
    assert_eq!(f.get("i64"), Some(&Value::I64(i64::MIN)));
    assert_eq!(f.get("f32"), Some(&Value::F32(1.5)));
    assert_eq!(f.get("f64"), Some(&Value::F64(-2.25)));
    assert_eq!(f.get("bool"), Some(&Value::Bool(true)));
    assert_eq!(f.get("tokens"), Some(&Value::from(vec!["a", "bc", ""])));
    let nested = f.get("nested").and_then(Value::as_array).unwrap();
    assert_eq!(nested[0], Value::from(vec![1i32, 2]));
    assert_eq!(nested[1], Value::from(vec!["x"]));
    assert_eq!(nested[2], Value::Array(vec![]));
    assert_eq!(f.get("missing"), None);
    // Writing what was read gives the same bytes.
    let mut again = GgufWriter::new();
    for (k, v) in f.metadata() {
        again.add_metadata(k.clone(), v.clone()).unwrap();
    }
    for t in f.tensors() {
        again.add_tensor(t.name.clone(), &t.dims, t.ggml_type, &f.tensor_data(t)).unwrap();
    }
    assert_eq!(again.to_bytes(), w.to_bytes());
}

#[test]
fn round_trip_every_dtype_tensor() {
    let mut w = GgufWriter::new();
    let mut expected = Vec::new();
    for (i, d) in DType::ALL.into_iter().enumerate() {
        let dims = [64u64, 3];
        let n_bytes = d.row_bytes(64).unwrap() * 3;
        let data: Vec<u8> = (0..n_bytes).map(|j| (i * 31 + j) as u8).collect();
        let name = format!("blk.{i}.{}", d.name());
        w.add_tensor(name.clone(), &dims, GgmlType::from_dtype(d), &data).unwrap();
        expected.push((name, d, data));
    }
    let f = open(w.to_bytes()).unwrap();
    assert_eq!(f.tensors().len(), expected.len());
    for (t, (name, d, data)) in f.tensors().iter().zip(&expected) {
        assert_eq!(&t.name, name);
        assert_eq!(t.dtype(), Some(*d));
        assert_eq!(t.dims, [64, 3]);
        assert_eq!(t.n_elements(), 192);
        assert_eq!(t.offset % 32, 0);
        assert_eq!(&*f.tensor_data(t), &data[..]);
        assert_eq!(f.tensor(name), Some(t));
    }
    assert!(f.data_offset().is_multiple_of(32));
}

#[test]
fn custom_alignment_and_types_memwall_cannot_compute() {
    let mut w = GgufWriter::new();
    w.set_alignment(256).unwrap();
    w.add_tensor("k", &[256, 2], GgmlType::Q4_K, &[9u8; 288]).unwrap();
    w.add_tensor("i", &[3], GgmlType::I32, &[1u8; 12]).unwrap();
    w.add_tensor("scalar", &[], GgmlType::F32, &[0u8; 4]).unwrap();
    w.add_tensor("empty", &[0, 5], GgmlType::F16, &[]).unwrap();
    let f = open(w.to_bytes()).unwrap();
    assert_eq!(f.alignment(), 256);
    assert_eq!(f.get(KEY_ALIGNMENT), Some(&Value::U32(256)));
    let k = f.tensor("k").unwrap();
    assert_eq!((k.ggml_type, k.dtype(), k.n_bytes), (GgmlType::Q4_K, Some(DType::Q4_K), 288));
    assert_eq!(f.tensor("i").unwrap().dtype(), None);
    assert_eq!(f.tensor("i").unwrap().offset, 512);
    assert_eq!(f.tensor("scalar").unwrap().n_elements(), 1);
    assert_eq!(f.tensor_data(f.tensor("empty").unwrap()).len(), 0);
    assert_eq!(f.data_offset() % 256, 0);
}

#[test]
fn write_file_then_open_maps_it() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GgufFile>();
    let path = std::env::temp_dir().join(format!("memwall-gguf-{}.gguf", std::process::id()));
    sample().write_file(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.blob().len(), sample().to_bytes().len());
    assert_eq!(&*f.tensor_data(f.tensor("b").unwrap()), &[2u8; 34]);
    std::fs::remove_file(&path).unwrap();
    let e = GgufFile::open(&path).unwrap_err().to_string();
    assert!(e.starts_with("cannot open") && e.contains("memwall-gguf-"), "{e}");
}

#[test]
fn writer_rejects_what_the_reader_would() {
    let mut w = GgufWriter::new();
    assert!(matches!(w.add_tensor("x", &[33], GgmlType::Q4_0, &[0; 18]), Err(GgufError::PartialBlock { .. })));
    assert!(matches!(w.add_tensor("x", &[32], GgmlType::Q4_0, &[0; 17]), Err(GgufError::WrongDataSize { .. })));
    assert!(matches!(w.add_tensor("x", &[1; 5], GgmlType::F32, &[0; 4]), Err(GgufError::TooManyDims { .. })));
    assert!(matches!(w.add_tensor("x", &[1 << 40, 1 << 40], GgmlType::F32, &[]), Err(GgufError::DimsOverflow { .. })));
    w.add_tensor("x", &[1], GgmlType::F32, &[0; 4]).unwrap();
    assert!(matches!(w.add_tensor("x", &[1], GgmlType::F32, &[0; 4]), Err(GgufError::DuplicateTensor { .. })));
    assert!(matches!(w.set_alignment(0), Err(GgufError::BadAlignment { .. })));
    assert!(matches!(w.set_alignment(3), Err(GgufError::BadAlignment { .. })));
    let mixed = Value::Array(vec![Value::U8(1), Value::String("a".into())]);
    let e = w.add_metadata("mixed", mixed).unwrap_err();
    assert!(e.to_string().contains("mixes u8 and string"), "{e}");
    let mut deep = Value::from(vec![1u8]);
    for _ in 0..4 {
        deep = Value::Array(vec![deep]);
    }
    assert!(matches!(w.add_metadata("deep", deep), Err(GgufError::BadValue { .. })));
    // Re-adding a key replaces its value in place.
    w.add_metadata("k", 1u32).unwrap().add_metadata("k", 2u32).unwrap();
    let f = open(w.to_bytes()).unwrap();
    assert_eq!(f.metadata().len(), 1);
    assert_eq!(f.get("k"), Some(&Value::U32(2)));
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample().to_bytes();
    // The last tensor ('b', 34 bytes) ends 30 bytes before the end: its
    // padding is not needed, every shorter prefix is an error.
    let needed = bytes.len() - 30;
    for len in 0..bytes.len() {
        assert_eq!(open(bytes[..len].to_vec()).is_ok(), len >= needed, "prefix of {len} bytes");
    }
    let f = open(bytes[..bytes.len() - 30].to_vec()).unwrap();
    assert_eq!(f.tensor_data(f.tensor("b").unwrap()).len(), 34);
    let e = err(bytes[..bytes.len() - 31].to_vec());
    assert!(e.to_string().starts_with("truncated file: tensor 'b' data ends at byte"), "{e}");
}

/// Raw bytes for hand-made malformed files.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        Raw(b"GGUF".to_vec()).u32(version).u64(n_tensors).u64(n_kv)
    }
    fn u32(mut self, v: u32) -> Raw {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Raw {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(self, s: &str) -> Raw {
        let mut r = self.u64(s.len() as u64);
        r.0.extend_from_slice(s.as_bytes());
        r
    }
    fn tensor(self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> Raw {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(type_id).u64(offset)
    }
    /// Pads to 32 and appends `n` data bytes.
    fn data(mut self, n: usize) -> Vec<u8> {
        self.0.resize(self.0.len().next_multiple_of(32) + n, 0xAB);
        self.0
    }
}

fn msg(bytes: Vec<u8>) -> String {
    err(bytes).to_string()
}

#[test]
fn raw_builder_makes_valid_files() {
    let f = open(Raw::header(2, 1, 1).str("a").u32(4).u32(5).tensor("t", &[8], 0, 0).data(32)).unwrap();
    assert_eq!(f.version(), 2);
    assert_eq!(f.get("a"), Some(&Value::U32(5)));
    assert_eq!(f.tensor_data(&f.tensors()[0]).len(), 32);
    // A file without tensors need not have a data section.
    assert!(open(Raw::header(3, 0, 0).0).is_ok());
}

#[test]
fn magic_version_and_endianness() {
    assert_eq!(msg(b"GGML\x03\0\0\0".to_vec()), "bad magic (expected 'GGUF', found 'GGML'): not a GGUF file");
    assert!(msg(b"GG".to_vec()).contains("truncated"));
    assert!(msg(Raw::header(1, 0, 0).0).starts_with("unsupported GGUF version 1"));
    assert!(msg(Raw::header(99, 0, 0).0).starts_with("unsupported GGUF version 99"));
    assert!(matches!(err(Raw::header(3u32.swap_bytes(), 0, 0).0), GgufError::BigEndian { version: 3 }));
}

#[test]
fn absurd_counts_and_lengths() {
    let e = msg(Raw::header(3, 1 << 62, 0).0);
    assert!(e.contains("tensor count 4611686018427387904"), "{e}");
    let e = msg(Raw::header(3, 0, 1 << 62).0);
    assert!(e.contains("metadata key count"), "{e}");
    let e = msg(Raw::header(3, 0, 1).u64(1 << 62).data(64));
    assert!(e.starts_with("metadata key #0: string length 4611686018427387904 exceeds"), "{e}");
    let e = msg(Raw::header(3, 0, 1).str("foo").u32(8).u64(1 << 62).0);
    assert!(e.starts_with("metadata key #0 'foo': string length"), "{e}");
    let e = msg(Raw::header(3, 0, 1).str("arr").u32(9).u32(0).u64(1 << 62).0);
    assert!(e.contains("'arr': array length 4611686018427387904"), "{e}");
    // A u8 array element takes 32 bytes in memory: the total is capped.
    let e = msg(Raw::header(3, 0, 1).str("arr").u32(9).u32(0).u64(1 << 24).data(1 << 24));
    assert!(e.contains("exceeds memwall's limit"), "{e}");
    let e = msg(Raw::header(3, 1, 0).u64(1 << 62).data(64));
    assert!(e.starts_with("tensor #0: string length"), "{e}");
}

#[test]
fn bad_metadata() {
    let e = msg(Raw::header(3, 0, 1).str("k").u32(13).u32(0).0);
    assert!(e.contains("'k': unknown metadata value type id 13"), "{e}");
    let e = msg(Raw::header(3, 0, 1).str("k").u32(9).u32(77).u64(0).0);
    assert!(e.contains("unknown metadata value type id 77"), "{e}");
    let e = msg(Raw::header(3, 0, 2).str("k").u32(4).u32(1).str("k").u32(4).u32(2).0);
    assert_eq!(e, "metadata key #1 'k' appears twice");
    let mut deep = Raw::header(3, 0, 1).str("deep").u32(9);
    for _ in 0..5 {
        deep = deep.u32(9).u64(1);
    }
    let e = msg(deep.u32(0).u64(0).0);
    assert!(e.contains("nested deeper than 4"), "{e}");
    let mut bad_utf8 = Raw::header(3, 0, 1).u64(2);
    bad_utf8.0.extend_from_slice(&[0xFF, 0xFE]);
    let e = msg(bad_utf8.u32(4).u32(0).0);
    assert_eq!(e, "metadata key #0: name is not valid UTF-8");
    // Invalid UTF-8 in a string value is decoded lossily.
    let mut raw = Raw::header(3, 0, 1).str("s").u32(8).u64(2);
    raw.0.extend_from_slice(&[b'a', 0xFF]);
    assert_eq!(open(raw.0).unwrap().get("s").and_then(Value::as_str), Some("a\u{FFFD}"));
}

#[test]
fn bad_alignment() {
    for (value, needle) in [(0u32, "0 is not a non-zero power of two"), (3, "3 is not")] {
        let e = msg(Raw::header(3, 0, 1).str("general.alignment").u32(4).u32(value).0);
        assert!(e.starts_with("general.alignment: ") && e.contains(needle), "{e}");
    }
    let e = msg(Raw::header(3, 0, 1).str("general.alignment").u32(8).str("32").0);
    assert!(e.contains("expected an unsigned integer, found string"), "{e}");
    // Any unsigned integer type is accepted.
    let f = open(Raw::header(3, 0, 1).str("general.alignment").u32(10).u64(64).0).unwrap();
    assert_eq!(f.alignment(), 64);
}

#[test]
fn bad_tensors() {
    let one = |dims: &[u64], type_id: u32, offset: u64, data: usize| {
        Raw::header(3, 1, 0).tensor("blk.0.attn_q.weight", dims, type_id, offset).data(data)
    };
    let e = msg(one(&[8], 0, 0, 31));
    assert_eq!(e, "truncated file: tensor 'blk.0.attn_q.weight' data ends at byte 128 but the file has 127 bytes");
    let e = msg(one(&[8], 0, 1 << 40, 32));
    assert!(e.starts_with("truncated file: tensor 'blk.0.attn_q.weight' data ends at byte"), "{e}");
    assert!(msg(one(&[8], 0, u64::MAX - 31, 32)).starts_with("truncated file"));
    let e = msg(one(&[8], 0, 16, 64));
    assert!(e.contains("tensor offset not aligned (16 is not a multiple of 32)"), "{e}");
    let e = msg(one(&[1 << 32, 1 << 32], 0, 0, 32));
    assert!(e.starts_with("tensor 'blk.0.attn_q.weight': dims overflow"), "{e}");
    assert!(matches!(err(one(&[u64::MAX], 24, 0, 32)), GgufError::DimsOverflow { .. }));
    assert!(matches!(err(one(&[1 << 62, 2], 28, 0, 32)), GgufError::DimsOverflow { .. }));
    let e = msg(one(&[8], 99, 0, 32));
    assert_eq!(e, "tensor 'blk.0.attn_q.weight': unknown ggml type id 99");
    assert!(msg(one(&[8], 4, 0, 32)).contains("unknown ggml type id 4"));
    let e = msg(one(&[48], 2, 0, 64));
    assert!(e.contains("rows of 48 elements are not a whole number of q4_0 blocks (32 elements each)"), "{e}");
    let e = msg(one(&[1, 1, 1, 1, 1], 0, 0, 32));
    assert!(e.contains("5 dimensions, more than the 4"), "{e}");
    assert!(matches!(err(one(&[8; 1000], 0, 0, 32)), GgufError::TooManyDims { .. }));

    let two = |second: &str, offset: u64| Raw::header(3, 2, 0).tensor("a", &[16], 0, 0).tensor(second, &[8], 0, offset);
    assert_eq!(msg(two("a", 64).data(96)), "duplicate tensor name 'a'");
    assert_eq!(msg(two("b", 32).data(96)), "tensors 'a' and 'b' overlap in the data section");
    assert!(open(two("b", 64).data(96)).is_ok());
    // Tensors need not be stored in table order.
    let swapped = Raw::header(3, 2, 0).tensor("a", &[8], 0, 64).tensor("b", &[16], 0, 0).data(96);
    assert!(open(swapped).is_ok());
}

#[test]
fn big_numbers_at_every_header_position_never_panic() {
    let bytes = sample().to_bytes();
    let header_len = open(bytes.clone()).unwrap().data_offset() as usize;
    for pos in 0..header_len {
        for patch in [u64::MAX, 1 << 62, 1 << 31, u32::MAX as u64, 0] {
            for width in [4, 8] {
                let mut b = bytes.clone();
                let end = (pos + width).min(b.len());
                b[pos..end].copy_from_slice(&patch.to_le_bytes()[..end - pos]);
                check_no_panic(b);
            }
        }
    }
}

/// Opening must not panic; if it succeeds every tensor's data is readable.
fn check_no_panic(bytes: Vec<u8>) {
    let len = bytes.len();
    if let Ok(f) = open(bytes) {
        for t in f.tensors() {
            let data = f.tensor_data(t);
            assert_eq!(data.len(), t.n_bytes);
            assert!(f.data_offset() + t.offset + t.n_bytes as u64 <= len as u64);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_mutations_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = sample().to_bytes();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        check_no_panic(bytes);
    }
}

/// Development aid: `MEMWALL_GGUF_FILES=a.gguf:b.gguf cargo test -p memwall-formats
/// --lib gguf::tests::open_real_files -- --ignored --nocapture`.
#[test]
#[ignore]
fn open_real_files() {
    let paths = std::env::var("MEMWALL_GGUF_FILES").unwrap_or_default();
    for path in paths.split(':').filter(|p| !p.is_empty()) {
        let f = GgufFile::open(std::path::Path::new(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        println!("{path}: {f:?}");
        for (k, v) in f.metadata() {
            println!("  {k} = {v}");
        }
        for t in f.tensors().iter().take(8) {
            println!("  {} {:?} {} @{} ({} bytes)", t.name, t.dims, t.ggml_type, t.offset, t.n_bytes);
        }
    }
}
