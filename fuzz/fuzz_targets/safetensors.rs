//! safetensors reader on arbitrary bytes: never panics, and every tensor it
//! accepts has exactly `product(shape) * bits / 8` bytes of in-file data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memwall_formats::safetensors::SafeTensors;
use memwall_formats::Blob;

fuzz_target!(|data: &[u8]| {
    let Ok(st) = SafeTensors::from_blob(Blob::from_vec(data.to_vec())) else {
        return;
    };
    for t in st.tensors() {
        let elems: u64 = t.shape.iter().map(|&d| d as u64).product();
        assert_eq!(elems * t.dtype.bits() / 8, t.data.len() as u64, "tensor '{}'", t.name);
        assert!(st.get(&t.name).is_some());
    }
});
