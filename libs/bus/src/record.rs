//! What goes onto the bus and what comes off it.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::MESSAGE_TYPE_HEADER;

/// One header: a name and raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name, e.g. `traceparent`.
    pub key: String,
    /// Header value.
    pub value: Vec<u8>,
}

/// A record to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Partitioning key; records with the same key stay in order (stockcast uses the symbol).
    pub key: Bytes,
    /// Encoded payload.
    pub payload: Bytes,
    /// Headers; the bus adds the current trace context when publishing.
    pub headers: Vec<Header>,
}

impl Record {
    /// A record with raw key and payload.
    pub fn new(key: impl Into<Bytes>, payload: impl Into<Bytes>) -> Self {
        Self {
            key: key.into(),
            payload: payload.into(),
            headers: Vec::new(),
        }
    }

    /// A record whose payload is the protobuf encoding of `message`, with its full message
    /// name in the [`MESSAGE_TYPE_HEADER`] header.
    pub fn proto<M: prost::Message + prost::Name>(key: impl Into<Bytes>, message: &M) -> Self {
        Self::new(key, message.encode_to_vec()).with_header(MESSAGE_TYPE_HEADER, M::full_name())
    }

    /// Adds a header.
    pub fn with_header(mut self, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header {
            key: key.to_owned(),
            value: value.into(),
        });
        self
    }
}

/// Where a published record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Partition number.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

/// A consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic it came from.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Partitioning key.
    pub key: Bytes,
    /// Encoded payload.
    pub payload: Bytes,
    /// Headers as published.
    pub headers: Vec<Header>,
    /// Broker or producer timestamp, milliseconds since epoch, when known.
    pub timestamp_ms: Option<i64>,
}

impl Message {
    /// The first value of header `key`.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| h.value.as_slice())
    }

    /// The payload's message name, from [`MESSAGE_TYPE_HEADER`].
    pub fn message_type(&self) -> Option<&str> {
        self.header(MESSAGE_TYPE_HEADER)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Decodes the payload as `M`.
    pub fn decode<M: prost::Message + Default>(&self) -> Result<M, prost::DecodeError> {
        M::decode(self.payload.as_ref())
    }
}

/// Positions to commit: for each (topic, partition), the offset of the next record to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offsets {
    next: BTreeMap<(String, i32), i64>,
}

impl Offsets {
    /// No positions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `message` (and everything before it in its partition) is processed.
    pub fn track(&mut self, message: &Message) {
        let next = message.offset + 1;
        let entry = self
            .next
            .entry((message.topic.clone(), message.partition))
            .or_insert(next);
        *entry = (*entry).max(next);
    }

    /// Positions for one message.
    pub fn of(message: &Message) -> Self {
        let mut offsets = Self::new();
        offsets.track(message);
        offsets
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }

    /// Forgets everything tracked.
    pub fn clear(&mut self) {
        self.next.clear();
    }

    /// (topic, partition, next offset) triples.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i32, i64)> {
        self.next.iter().map(|((t, p), o)| (t.as_str(), *p, *o))
    }
}
