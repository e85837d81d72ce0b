//! The bus record format: how one accepted payload's rows (a [`RowEnvelope`],
//! or one partition's share of it on Kafka) are written to the bus.
//!
//! Version 2 (written now) is Protocol Buffers, documented for other readers
//! of the topic in `docs/bus-record.md` with its schema in
//! `docs/proto/adpipe/bus/v2/rows.proto`: the two bytes `0x00 0x02`, then
//! one `adpipe.bus.v2.RowsRecord` message. Version 1 was JSON (a record
//! starting with `{`); it is still read, so a log or topic written by an older
//! adpipe drains after an upgrade.
//!
//! Writing goes straight from borrowed rows into the buffer with prost's field
//! encoders (no copy of the rows); reading decodes into the derived messages
//! below and moves their strings into [`Row`]s. A test checks that both
//! sides produce the same bytes.

use std::collections::BTreeMap;

use prost::encoding::{self, btree_map, int64, sint32, string, uint32};
use prost::Message as _;

use crate::row::{Row, RowEnvelope, RowKind};

/// First two bytes of a version-2 record (JSON never starts with `0x00`).
pub const V2_PREFIX: [u8; 2] = [0x00, 0x02];

/// A record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("a version-1 (JSON) record that does not parse: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a version-2 (protobuf) record that does not parse: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("record version {0} is unknown to this adpipe (newer than it?)")]
    UnknownVersion(u8),
    #[error("an empty record")]
    Empty,
    #[error("row {row}: {problem}")]
    InvalidRow { row: usize, problem: &'static str },
}

/// Encode `rows` of `tenant`'s `pipeline` as a version-2 record.
pub fn encode<'a>(
    tenant: &str,
    pipeline: &str,
    rows: impl IntoIterator<Item = &'a Row>,
) -> Vec<u8> {
    let sized: Vec<(&Row, usize)> = rows.into_iter().map(|r| (r, row_len(r))).collect();
    encode_sized(&tenant.to_owned(), &pipeline.to_owned(), &sized)
}

/// Encode `rows` as version-2 records of at most `max_bytes` each, in
/// order (a single row larger than that is a record of its own).
pub fn encode_chunked(
    tenant: &str,
    pipeline: &str,
    rows: &[&Row],
    max_bytes: usize,
) -> Vec<Vec<u8>> {
    let (tenant, pipeline) = (&tenant.to_owned(), &pipeline.to_owned());
    let head = V2_PREFIX.len() + string::encoded_len(1, tenant) + string::encoded_len(2, pipeline);
    let mut records = Vec::new();
    let mut chunk: Vec<(&Row, usize)> = Vec::new();
    let mut bytes = head;
    for &row in rows {
        let len = row_len(row);
        let framed = framed_len(len);
        if !chunk.is_empty() && bytes + framed > max_bytes {
            records.push(encode_sized(tenant, pipeline, &chunk));
            chunk.clear();
            bytes = head;
        }
        chunk.push((row, len));
        bytes += framed;
    }
    if !chunk.is_empty() {
        records.push(encode_sized(tenant, pipeline, &chunk));
    }
    records
}

/// A row's bytes in the record: its tag, its length and its fields.
fn framed_len(len: usize) -> usize {
    encoding::key_len(3) + encoding::encoded_len_varint(len as u64) + len
}

/// Encode rows whose field lengths ([`row_len`]) are known.
#[allow(clippy::ptr_arg)] // prost's string encoders take `&String`
fn encode_sized(tenant: &String, pipeline: &String, rows: &[(&Row, usize)]) -> Vec<u8> {
    let len = string::encoded_len(1, tenant)
        + string::encoded_len(2, pipeline)
        + rows.iter().map(|&(_, n)| framed_len(n)).sum::<usize>();
    let mut buf = Vec::with_capacity(V2_PREFIX.len() + len);
    buf.extend_from_slice(&V2_PREFIX);
    string::encode(1, tenant, &mut buf);
    string::encode(2, pipeline, &mut buf);
    for &(row, len) in rows {
        encoding::encode_key(3, encoding::WireType::LengthDelimited, &mut buf);
        encoding::encode_varint(len as u64, &mut buf);
        let start = buf.len();
        fields(row, &mut buf);
        debug_assert_eq!(
            buf.len() - start,
            len,
            "a row's length and its bytes disagree"
        );
    }
    buf
}

/// Encode a whole envelope.
pub fn encode_envelope(envelope: &RowEnvelope) -> Vec<u8> {
    encode(&envelope.tenant, &envelope.pipeline, &envelope.rows)
}

/// Read a record of either version.
pub fn decode(bytes: &[u8]) -> Result<RowEnvelope, RecordError> {
    match bytes {
        [] => Err(RecordError::Empty),
        [0x00, 0x02, body @ ..] => {
            let record = RowsRecord::decode(body)?;
            let rows = record
                .rows
                .into_iter()
                .enumerate()
                .map(|(i, row)| row.into_row(i))
                .collect::<Result<_, _>>()?;
            Ok(RowEnvelope {
                tenant: record.tenant,
                pipeline: record.pipeline,
                rows,
            })
        }
        [0x00, version, ..] => Err(RecordError::UnknownVersion(*version)),
        _ => Ok(serde_json::from_slice(bytes)?),
    }
}

fn kind_number(kind: RowKind) -> i32 {
    match kind {
        RowKind::Snapshot => 0,
        RowKind::Delta => 1,
    }
}

/// Where a row's fields go: counted ([`Length`]) or written ([`Vec<u8>`]).
/// [`fields`] walks them once for both, so the length prefix and the bytes
/// cannot disagree.
trait Sink {
    #[allow(clippy::ptr_arg)] // prost's string encoders take `&String`
    fn string(&mut self, tag: u32, value: &String);
    fn int32(&mut self, tag: u32, value: i32);
    fn sint32(&mut self, tag: u32, value: i32);
    fn uint32(&mut self, tag: u32, value: u32);
    fn int64(&mut self, tag: u32, value: i64);
    fn map(&mut self, tag: u32, value: &BTreeMap<String, i64>);
}

/// Counts the bytes a row's fields take.
struct Length(usize);

impl Sink for Length {
    fn string(&mut self, tag: u32, value: &String) {
        self.0 += string::encoded_len(tag, value);
    }
    fn int32(&mut self, tag: u32, value: i32) {
        self.0 += encoding::int32::encoded_len(tag, &value);
    }
    fn sint32(&mut self, tag: u32, value: i32) {
        self.0 += sint32::encoded_len(tag, &value);
    }
    fn uint32(&mut self, tag: u32, value: u32) {
        self.0 += uint32::encoded_len(tag, &value);
    }
    fn int64(&mut self, tag: u32, value: i64) {
        self.0 += int64::encoded_len(tag, &value);
    }
    fn map(&mut self, tag: u32, value: &BTreeMap<String, i64>) {
        self.0 += btree_map::encoded_len(string::encoded_len, int64::encoded_len, tag, value);
    }
}

impl Sink for Vec<u8> {
    fn string(&mut self, tag: u32, value: &String) {
        string::encode(tag, value, self);
    }
    fn int32(&mut self, tag: u32, value: i32) {
        encoding::int32::encode(tag, &value, self);
    }
    fn sint32(&mut self, tag: u32, value: i32) {
        sint32::encode(tag, &value, self);
    }
    fn uint32(&mut self, tag: u32, value: u32) {
        uint32::encode(tag, &value, self);
    }
    fn int64(&mut self, tag: u32, value: i64) {
        int64::encode(tag, &value, self);
    }
    fn map(&mut self, tag: u32, value: &BTreeMap<String, i64>) {
        btree_map::encode(
            string::encode,
            string::encoded_len,
            int64::encode,
            int64::encoded_len,
            tag,
            value,
            self,
        );
    }
}

fn row_len(row: &Row) -> usize {
    let mut length = Length(0);
    fields(row, &mut length);
    length.0
}

/// One row's fields in tag order, proto3 style: zero numbers and empty
/// strings of plain fields are left out, `optional` fields are written when
/// present.
fn fields(row: &Row, sink: &mut impl Sink) {
    let plain = |sink: &mut _, tag, v: &String| {
        if !v.is_empty() {
            Sink::string(sink, tag, v)
        }
    };
    let optional = |sink: &mut _, tag, v: &Option<String>| {
        if let Some(v) = v {
            Sink::string(sink, tag, v)
        }
    };
    let number = |sink: &mut _, tag, v: i64| {
        if v != 0 {
            Sink::int64(sink, tag, v)
        }
    };
    let kind = kind_number(row.kind);
    if kind != 0 {
        sink.int32(1, kind);
    }
    plain(sink, 2, &row.platform);
    plain(sink, 3, &row.account_id);
    optional(sink, 4, &row.campaign_id);
    optional(sink, 5, &row.campaign_name);
    optional(sink, 6, &row.ad_group_id);
    optional(sink, 7, &row.ad_group_name);
    optional(sink, 8, &row.ad_id);
    optional(sink, 9, &row.ad_name);
    optional(sink, 10, &row.breakdown);
    if row.date != 0 {
        sink.sint32(11, row.date);
    }
    if let Some(hour) = row.hour {
        sink.uint32(12, u32::from(hour));
    }
    optional(sink, 13, &row.currency);
    number(sink, 14, row.impressions);
    number(sink, 15, row.clicks);
    number(sink, 16, row.spend_micros);
    number(sink, 17, row.conversions_micros);
    number(sink, 18, row.conversion_value_micros);
    sink.map(19, &row.extras);
    number(sink, 20, row.observed_at_us);
    optional(sink, 21, &row.dedup_key);
    plain(sink, 22, &row.adapter);
    plain(sink, 23, &row.adapter_version);
}

/// `adpipe.bus.v2.RowsRecord`, as read back.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RowsRecord {
    #[prost(string, tag = "1")]
    pub tenant: String,
    #[prost(string, tag = "2")]
    pub pipeline: String,
    #[prost(message, repeated, tag = "3")]
    pub rows: Vec<RowMessage>,
}

/// `adpipe.bus.v2.Row`, as read back.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RowMessage {
    #[prost(int32, tag = "1")]
    pub kind: i32,
    #[prost(string, tag = "2")]
    pub platform: String,
    #[prost(string, tag = "3")]
    pub account_id: String,
    #[prost(string, optional, tag = "4")]
    pub campaign_id: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub campaign_name: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub ad_group_id: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub ad_group_name: Option<String>,
    #[prost(string, optional, tag = "8")]
    pub ad_id: Option<String>,
    #[prost(string, optional, tag = "9")]
    pub ad_name: Option<String>,
    #[prost(string, optional, tag = "10")]
    pub breakdown: Option<String>,
    #[prost(sint32, tag = "11")]
    pub date: i32,
    #[prost(uint32, optional, tag = "12")]
    pub hour: Option<u32>,
    #[prost(string, optional, tag = "13")]
    pub currency: Option<String>,
    #[prost(int64, tag = "14")]
    pub impressions: i64,
    #[prost(int64, tag = "15")]
    pub clicks: i64,
    #[prost(int64, tag = "16")]
    pub spend_micros: i64,
    #[prost(int64, tag = "17")]
    pub conversions_micros: i64,
    #[prost(int64, tag = "18")]
    pub conversion_value_micros: i64,
    #[prost(btree_map = "string, int64", tag = "19")]
    pub extras: BTreeMap<String, i64>,
    #[prost(int64, tag = "20")]
    pub observed_at_us: i64,
    #[prost(string, optional, tag = "21")]
    pub dedup_key: Option<String>,
    #[prost(string, tag = "22")]
    pub adapter: String,
    #[prost(string, tag = "23")]
    pub adapter_version: String,
}

impl RowMessage {
    fn into_row(self, row: usize) -> Result<Row, RecordError> {
        let invalid = |problem| RecordError::InvalidRow { row, problem };
        Ok(Row {
            kind: match self.kind {
                0 => RowKind::Snapshot,
                1 => RowKind::Delta,
                _ => return Err(invalid("kind is neither SNAPSHOT (0) nor DELTA (1)")),
            },
            platform: self.platform,
            account_id: self.account_id,
            campaign_id: self.campaign_id,
            campaign_name: self.campaign_name,
            ad_group_id: self.ad_group_id,
            ad_group_name: self.ad_group_name,
            ad_id: self.ad_id,
            ad_name: self.ad_name,
            breakdown: self.breakdown,
            date: self.date,
            hour: match self.hour {
                None => None,
                Some(h) => Some(
                    u8::try_from(h)
                        .ok()
                        .filter(|h| *h < 24)
                        .ok_or_else(|| invalid("hour is not 0..=23"))?,
                ),
            },
            currency: self.currency,
            impressions: self.impressions,
            clicks: self.clicks,
            spend_micros: self.spend_micros,
            conversions_micros: self.conversions_micros,
            conversion_value_micros: self.conversion_value_micros,
            extras: self.extras,
            observed_at_us: self.observed_at_us,
            dedup_key: self.dedup_key,
            adapter: self.adapter,
            adapter_version: self.adapter_version,
        })
    }

    /// The message for `row` (what a reader decodes; used to check the
    /// hand-written encoder against prost's).
    #[cfg(test)]
    fn from_row(row: &Row) -> RowMessage {
        RowMessage {
            kind: kind_number(row.kind),
            platform: row.platform.clone(),
            account_id: row.account_id.clone(),
            campaign_id: row.campaign_id.clone(),
            campaign_name: row.campaign_name.clone(),
            ad_group_id: row.ad_group_id.clone(),
            ad_group_name: row.ad_group_name.clone(),
            ad_id: row.ad_id.clone(),
            ad_name: row.ad_name.clone(),
            breakdown: row.breakdown.clone(),
            date: row.date,
            hour: row.hour.map(u32::from),
            currency: row.currency.clone(),
            impressions: row.impressions,
            clicks: row.clicks,
            spend_micros: row.spend_micros,
            conversions_micros: row.conversions_micros,
            conversion_value_micros: row.conversion_value_micros,
            extras: row.extras.clone(),
            observed_at_us: row.observed_at_us,
            dedup_key: row.dedup_key.clone(),
            adapter: row.adapter.clone(),
            adapter_version: row.adapter_version.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: i64) -> Row {
        Row {
            kind: if i % 2 == 0 {
                RowKind::Snapshot
            } else {
                RowKind::Delta
            },
            platform: "meta".into(),
            account_id: "1234567890".into(),
            campaign_id: Some(format!("c{i}")),
            campaign_name: (i % 3 == 0).then(|| "Prospecting – Q4 ✓".into()),
            ad_group_id: Some("s1".into()),
            ad_group_name: None,
            ad_id: Some(format!("a{i}")),
            ad_name: Some(String::new()),
            breakdown: (i % 4 == 0).then(|| "age=18-24|gender=female".into()),
            date: 20_393 - i as i32 * 30_000,
            hour: (i % 5 == 0).then_some(23),
            currency: (i != 3).then(|| "USD".into()),
            impressions: 1000 + i,
            clicks: 0,
            spend_micros: -12_340_000 * i,
            conversions_micros: i64::MAX,
            conversion_value_micros: i64::MIN,
            extras: if i % 2 == 0 {
                BTreeMap::from([("actions_link_click".into(), 15), ("leads".into(), -3)])
            } else {
                BTreeMap::new()
            },
            observed_at_us: 1_764_000_000_000_000 + i,
            dedup_key: (i % 2 == 1).then(|| format!("lead-{i}")),
            adapter: "meta".into(),
            adapter_version: "0.2.0".into(),
        }
    }

    /// A lead as a webhook gives it: no account, campaign or currency yet
    /// (the hierarchy places it), so every plain string but two is empty.
    fn lead() -> Row {
        Row {
            kind: RowKind::Delta,
            platform: "meta".into(),
            account_id: String::new(),
            campaign_id: None,
            campaign_name: None,
            ad_group_id: None,
            ad_group_name: None,
            ad_id: Some("a9".into()),
            ad_name: None,
            breakdown: None,
            date: 20_393,
            hour: None,
            currency: None,
            impressions: 0,
            clicks: 0,
            spend_micros: 0,
            conversions_micros: 0,
            conversion_value_micros: 0,
            extras: BTreeMap::from([("leads".into(), 1_000_000)]),
            observed_at_us: 5,
            dedup_key: Some("leadgen:1950123456789012".into()),
            adapter: String::new(),
            adapter_version: String::new(),
        }
    }

    fn envelope() -> RowEnvelope {
        RowEnvelope {
            tenant: "acme".into(),
            pipeline: "meta-ads".into(),
            rows: (0..12).map(row).chain([lead()]).collect(),
        }
    }

    #[test]
    fn records_round_trip_exactly() {
        let envelope = envelope();
        let bytes = encode_envelope(&envelope);
        assert_eq!(&bytes[..2], &V2_PREFIX);
        assert_eq!(decode(&bytes).expect("decode"), envelope);
    }

    #[test]
    fn the_hand_written_encoder_writes_what_prost_writes() {
        let envelope = envelope();
        let derived = RowsRecord {
            tenant: envelope.tenant.clone(),
            pipeline: envelope.pipeline.clone(),
            rows: envelope.rows.iter().map(RowMessage::from_row).collect(),
        };
        assert_eq!(encode_envelope(&envelope)[2..], derived.encode_to_vec()[..]);
    }

    #[test]
    fn version_1_json_records_are_still_read() {
        let envelope = envelope();
        let json = serde_json::to_vec(&envelope).expect("json");
        assert_eq!(decode(&json).expect("decode"), envelope);
    }

    #[test]
    fn the_binary_record_is_smaller_than_json() {
        let envelope = envelope();
        let binary = encode_envelope(&envelope).len();
        let json = serde_json::to_vec(&envelope).expect("json").len();
        assert!(binary * 2 < json, "binary {binary} B vs JSON {json} B");
    }

    #[test]
    fn unknown_versions_and_garbage_are_refused() {
        assert!(matches!(
            decode(&[0x00, 0x03, 1, 2]),
            Err(RecordError::UnknownVersion(3))
        ));
        assert!(matches!(decode(&[]), Err(RecordError::Empty)));
        assert!(decode(&[0x00, 0x02, 0xff, 0xff]).is_err());
        assert!(decode(b"not json").is_err());
        let mut bad_kind = RowsRecord::default();
        bad_kind.rows.push(RowMessage {
            kind: 7,
            ..RowMessage::default()
        });
        let mut bytes = V2_PREFIX.to_vec();
        bytes.extend(bad_kind.encode_to_vec());
        assert!(matches!(
            decode(&bytes),
            Err(RecordError::InvalidRow { row: 0, .. })
        ));
    }

    #[test]
    fn chunked_records_hold_every_row_once_in_order_within_the_limit() {
        let rows: Vec<Row> = (0..40).map(row).chain([lead()]).collect();
        let refs: Vec<&Row> = rows.iter().collect();
        let whole = encode("demo", "meta", refs.iter().copied()).len();
        for max in [1, 300, 1_000, whole - 1, whole, usize::MAX] {
            let records = encode_chunked("demo", "meta", &refs, max);
            let mut back = vec![];
            for record in &records {
                // Over the limit only as a record of a single row.
                let envelope = decode(record).expect("decodes");
                assert!(record.len() <= max || envelope.rows.len() == 1, "{max}");
                assert_eq!(
                    (envelope.tenant.as_str(), envelope.pipeline.as_str()),
                    ("demo", "meta")
                );
                back.extend(envelope.rows);
            }
            assert_eq!(back, rows, "max {max}");
            let expected = if max >= whole {
                1
            } else {
                records.len().max(2)
            };
            assert_eq!(records.len(), expected, "max {max}");
        }
        assert_eq!(encode_chunked("demo", "meta", &refs, 1).len(), rows.len());
        assert!(encode_chunked("demo", "meta", &[], 1_000).is_empty());
    }
}
