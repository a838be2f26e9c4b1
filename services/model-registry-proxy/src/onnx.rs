//! What the proxy reads from an ONNX model. The model contract and the `metadata_props`
//! reader live in `stockcast-model` (shared with inference); this adapter only adds the
//! proxy's `sha256` version tag and the hex spelling of digests.

pub use stockcast_model::contract::{Contract, contract_of};
pub use stockcast_model::metadata::read_metadata_props;

/// Version tag holding the lower-case hex SHA-256 of the ONNX bytes.
pub const TAG_SHA256: &str = "sha256";

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
