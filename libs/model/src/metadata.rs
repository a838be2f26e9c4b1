//! An ONNX model's `metadata_props`, decoded with prost from the few `ModelProto` fields
//! needed (other fields are skipped), and ONNX bytes carrying given metadata.

use std::collections::BTreeMap;

pub use crate::proto::{
    DATA_LOCATION_EXTERNAL, GraphProto, ModelProto, StringStringEntryProto, TensorProto,
};

/// Reads the `metadata_props` of ONNX `bytes`; the error says why they are not an ONNX model.
pub fn metadata_props(bytes: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let model: ModelProto =
        prost::Message::decode(bytes).map_err(|e| format!("artifact is not an ONNX model: {e}"))?;
    if model.ir_version < 1 {
        return Err(format!(
            "artifact is not an ONNX model: ir_version {} (expected >= 1)",
            model.ir_version
        ));
    }
    Ok(model
        .metadata_props
        .into_iter()
        .map(|p| (p.key, p.value))
        .collect())
}

/// Reads the `metadata_props` of the ONNX model in `reader` without loading the graph: the
/// top-level fields needed are copied out (the graph and initializers, which hold
/// nearly all of a model's bytes, are skipped with `seek`) and decoded with prost. A model
/// whose initializers keep their data in other files (ONNX external data) is refused: the
/// registry serves one file, which could not be loaded alone.
pub fn read_metadata_props<R: std::io::Read + std::io::Seek>(
    mut reader: R,
) -> Result<BTreeMap<String, String>, String> {
    use std::io::SeekFrom;
    let size = reader
        .seek(SeekFrom::End(0))
        .and_then(|end| reader.seek(SeekFrom::Start(0)).map(|_| end))
        .map_err(|e| format!("reading the artifact: {e}"))?;
    let mut kept = Vec::new();
    let mut external = None;
    walk(&mut reader, size, &mut |reader, key, value| {
        match (key >> 3, value) {
            (1, Field::Varint(v)) => {
                prost::encoding::encode_varint(key, &mut kept);
                prost::encoding::encode_varint(v, &mut kept);
            }
            (2 | 3 | 14, Field::Bytes(len)) => {
                let value = read_bytes(reader, len)?;
                prost::encoding::encode_varint(key, &mut kept);
                prost::encoding::encode_varint(len, &mut kept);
                kept.extend_from_slice(&value);
            }
            (7, Field::Bytes(len)) if external.is_none() => {
                external = external_initializer(reader, len)?;
            }
            (_, Field::Bytes(len)) => skip(reader, len)?,
            _ => {}
        }
        Ok(())
    })?;
    if let Some(tensor) = external {
        return Err(format!(
            "initializer {tensor:?} keeps its data outside the ONNX file (ONNX external \
             data), so the file cannot be loaded alone; log the model with \
             mlflow.onnx.log_model(..., save_as_external_data=False)"
        ));
    }
    metadata_props(&kept)
}

/// The name of the first initializer of the graph in the next `len` bytes whose data is
/// external (`data_location` EXTERNAL, or `external_data` present).
fn external_initializer<R: std::io::Read + std::io::Seek>(
    reader: &mut R,
    len: u64,
) -> Result<Option<String>, String> {
    let mut found = None;
    walk(reader, len, &mut |reader, key, value| {
        match (key >> 3, value) {
            (5, Field::Bytes(len)) if found.is_none() => {
                let (mut name, mut external) = (String::new(), false);
                walk(reader, len, &mut |reader, key, value| {
                    match (key >> 3, value) {
                        (8, Field::Bytes(len)) if len <= 4096 => {
                            name = String::from_utf8_lossy(&read_bytes(reader, len)?).into_owned();
                        }
                        (13, Field::Bytes(len)) => {
                            external = true;
                            skip(reader, len)?;
                        }
                        (14, Field::Varint(v)) => {
                            external |= v == DATA_LOCATION_EXTERNAL as u64;
                        }
                        (_, Field::Bytes(len)) => skip(reader, len)?,
                        _ => {}
                    }
                    Ok(())
                })?;
                if external {
                    found = Some(name);
                }
            }
            (_, Field::Bytes(len)) => skip(reader, len)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(found)
}

/// A protobuf field's value as `walk` hands it over.
#[derive(Debug, Clone, Copy)]
enum Field {
    /// A varint.
    Varint(u64),
    /// A length-delimited value of this many bytes, next in the reader: the visitor reads
    /// or skips exactly that many.
    Bytes(u64),
}

/// Calls `visit(reader, key, value)` for each varint and length-delimited field in the next
/// `len` bytes of `reader`; fixed-width fields are skipped.
fn walk<R: std::io::Read + std::io::Seek>(
    reader: &mut R,
    len: u64,
    visit: &mut dyn FnMut(&mut R, u64, Field) -> Result<(), String>,
) -> Result<(), String> {
    let not_onnx = |what: &str| format!("artifact is not an ONNX model: {what}");
    let mut position = 0u64;
    while position < len {
        let (key, n) = read_varint(reader).map_err(|e| not_onnx(&e))?;
        position += n;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let (value, n) = read_varint(reader).map_err(|e| not_onnx(&e))?;
                position += n;
                visit(reader, key, Field::Varint(value))?;
            }
            2 => {
                let (size, n) = read_varint(reader).map_err(|e| not_onnx(&e))?;
                position += n;
                if position > len || size > len - position {
                    return Err(not_onnx(&format!(
                        "field {field} of {size} bytes runs past the end ({len} bytes)"
                    )));
                }
                visit(reader, key, Field::Bytes(size))?;
                position += size;
            }
            1 | 5 => {
                let size = if wire == 1 { 8 } else { 4 };
                skip(reader, size)?;
                position += size;
            }
            _ => return Err(not_onnx(&format!("wire type {wire} at byte {position}"))),
        }
    }
    if position > len {
        return Err(not_onnx(&format!(
            "a field runs past the end ({len} bytes)"
        )));
    }
    Ok(())
}

fn read_bytes<R: std::io::Read>(reader: &mut R, len: u64) -> Result<Vec<u8>, String> {
    let mut value = vec![0u8; len as usize];
    reader
        .read_exact(&mut value)
        .map_err(|e| format!("reading the artifact: {e}"))?;
    Ok(value)
}

fn skip<R: std::io::Seek>(reader: &mut R, len: u64) -> Result<(), String> {
    let len = i64::try_from(len).map_err(|_| format!("a field of {len} bytes is too long"))?;
    reader
        .seek(std::io::SeekFrom::Current(len))
        .map(|_| ())
        .map_err(|e| format!("reading the artifact: {e}"))
}

fn read_varint<R: std::io::Read>(reader: &mut R) -> Result<(u64, u64), String> {
    let mut value = 0u64;
    for i in 0..10 {
        let mut byte = [0u8; 1];
        reader
            .read_exact(&mut byte)
            .map_err(|e| format!("truncated varint: {e}"))?;
        value |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] < 0x80 {
            return Ok((value, i + 1));
        }
    }
    Err("varint longer than 10 bytes".to_owned())
}

/// ONNX bytes of a model carrying `props` in `metadata_props` (tests, the demo and tools
/// that register models). `padding` bytes go into `doc_string`, to make models of a size.
pub fn encode_model(props: &BTreeMap<String, String>, padding: usize) -> Vec<u8> {
    let model = ModelProto {
        ir_version: 9,
        producer_name: "stockcast".to_owned(),
        producer_version: env!("CARGO_PKG_VERSION").to_owned(),
        doc_string: "x".repeat(padding),
        metadata_props: props
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        ..ModelProto::default()
    };
    prost::Message::encode_to_vec(&model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Contract;
    use crate::contract::tests::contract;

    #[test]
    fn metadata_round_trips_through_onnx_bytes() {
        let bytes = encode_model(&contract().to_props(), 10);
        let props = metadata_props(&bytes).unwrap_or_default();
        assert_eq!(Contract::from_props(&props, "m"), Ok(Some(contract())));
    }

    #[test]
    fn metadata_is_read_without_loading_the_rest() {
        let bytes = encode_model(&contract().to_props(), 100_000);
        let props = read_metadata_props(std::io::Cursor::new(&bytes)).unwrap_or_default();
        assert_eq!(Contract::from_props(&props, "m"), Ok(Some(contract())));
        assert_eq!(Ok(props), metadata_props(&bytes));
        let truncated = &bytes[..bytes.len() - 10];
        let err = read_metadata_props(std::io::Cursor::new(truncated)).unwrap_err();
        assert!(err.contains("runs past the end"), "{err}");
        let err = read_metadata_props(std::io::Cursor::new(b"\x0bnot onnx")).unwrap_err();
        assert!(err.contains("not an ONNX model"), "{err}");
        assert!(read_metadata_props(std::io::Cursor::new(b"")).is_err());
    }

    fn model_with_initializer(tensor: TensorProto) -> Vec<u8> {
        let mut model: ModelProto =
            prost::Message::decode(encode_model(&contract().to_props(), 10).as_slice()).unwrap();
        model.graph = Some(GraphProto {
            initializer: vec![
                TensorProto {
                    name: "bias".into(),
                    raw_data: vec![0; 16],
                    ..TensorProto::default()
                },
                tensor,
            ],
            ..GraphProto::default()
        });
        prost::Message::encode_to_vec(&model)
    }

    #[test]
    fn initializers_in_external_files_are_refused() {
        let external = model_with_initializer(TensorProto {
            name: "coefficients".into(),
            external_data: vec![StringStringEntryProto {
                key: "location".into(),
                value: "model.onnx.data".into(),
            }],
            data_location: DATA_LOCATION_EXTERNAL,
            ..TensorProto::default()
        });
        let err = read_metadata_props(std::io::Cursor::new(&external)).unwrap_err();
        assert!(err.contains("\"coefficients\""), "{err}");
        assert!(err.contains("save_as_external_data=False"), "{err}");

        let inline = model_with_initializer(TensorProto {
            name: "coefficients".into(),
            raw_data: vec![1; 4096],
            ..TensorProto::default()
        });
        let props = read_metadata_props(std::io::Cursor::new(&inline)).unwrap();
        assert_eq!(Contract::from_props(&props, "m"), Ok(Some(contract())));
    }

    #[test]
    fn not_onnx_is_refused() {
        assert!(metadata_props(b"not a model at all").is_err());
        assert!(metadata_props(&[]).unwrap_err().contains("ir_version 0"));
    }
}
