//! Keyset paging of list answers (`/v1/insights`, `/v1/campaigns`).
//!
//! Rows are put in one total order: the caller's `order_by` keys, then the
//! row's identity (date, dimensions, currency), which no two rows share. A
//! page's `next_cursor` carries the sort key of its last row, a digest of
//! the query (every parameter but paging) and a digest of the data version
//! the page was computed on. The next page starts strictly after that key,
//! so a row inserted meanwhile never makes a page repeat a row of an
//! earlier one. When the data changed between pages and the order depends
//! on metric values (which may have changed too), the cursor is refused
//! with `409 cursor_stale`: the client restarts from the first page.

use std::cmp::Ordering;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ApiError;

/// One `order_by` key: a field, descending when written `-field`.
#[derive(Clone, Debug, PartialEq)]
pub struct SortKey {
    pub field: String,
    pub descending: bool,
}

impl SortKey {
    /// `-spend` → spend descending; `spend` or `+spend` → ascending.
    pub fn parse(text: &str) -> SortKey {
        match text.strip_prefix('-') {
            Some(field) => SortKey {
                field: field.to_owned(),
                descending: true,
            },
            None => SortKey {
                field: text.strip_prefix('+').unwrap_or(text).to_owned(),
                descending: false,
            },
        }
    }
}

/// The total order of an answer's rows.
pub struct Order {
    pub keys: Vec<SortKey>,
    /// Fields that identify a row, compared after `keys` (nulls first,
    /// the answers' default order).
    pub identity: Vec<String>,
}

/// Where the next page starts.
#[derive(Serialize, Deserialize)]
struct Cursor {
    /// Digest of the query without paging.
    q: String,
    /// Digest of the data version the previous page was computed on.
    v: String,
    /// Sort key of the previous page's last row.
    after: Vec<Value>,
}

/// A short digest of `text` for cursors.
pub fn digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// A page of an answer's rows.
pub struct Page {
    pub rows: Vec<Map<String, Value>>,
    pub next_cursor: Option<String>,
    /// Rows of the whole answer.
    pub total: usize,
}

impl Order {
    fn key(&self, row: &Map<String, Value>) -> Vec<Value> {
        self.keys
            .iter()
            .map(|k| k.field.as_str())
            .chain(self.identity.iter().map(String::as_str))
            .map(|field| row.get(field).cloned().unwrap_or(Value::Null))
            .collect()
    }

    fn compare(&self, a: &[Value], b: &[Value]) -> Ordering {
        let sorted = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| compare_cells(a.get(i), b.get(i), k.descending));
        let identity =
            (self.keys.len()..a.len().max(b.len())).map(|i| compare_identity(a.get(i), b.get(i)));
        sorted
            .chain(identity)
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }

    /// Whether the order depends only on what identifies rows, so a page
    /// computed on newer data still continues the earlier pages without
    /// repeating or skipping a row they could have held.
    fn identity_only(&self) -> bool {
        self.keys.iter().all(|k| self.identity.contains(&k.field))
    }

    /// Sort `rows` and cut the page `cursor` (a `next_cursor` of this query,
    /// `query` its digest) asks for, `limit` rows long, at data `version`.
    pub fn page(
        &self,
        rows: Vec<Map<String, Value>>,
        cursor: Option<&str>,
        query: &str,
        version: &str,
        limit: usize,
    ) -> Result<Page, ApiError> {
        let version = digest(version);
        let mut keyed: Vec<(Vec<Value>, Map<String, Value>)> =
            rows.into_iter().map(|r| (self.key(&r), r)).collect();
        keyed.sort_by(|a, b| self.compare(&a.0, &b.0));
        let total = keyed.len();
        let start = match cursor {
            None => 0,
            Some(text) => {
                let cursor = decode(text, query)?;
                if cursor.v != version && !self.identity_only() {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "cursor_stale",
                        "the data changed since the first page and the order depends on metric values; \
                         request the first page again (without `cursor`)",
                    ));
                }
                keyed.partition_point(|(key, _)| self.compare(key, &cursor.after).is_le())
            }
        };
        let mut page: Vec<(Vec<Value>, Map<String, Value>)> =
            keyed.into_iter().skip(start).take(limit + 1).collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let next_cursor = match page.last() {
            Some((key, _)) if more => Some(encode(&Cursor {
                q: query.to_owned(),
                v: version,
                after: key.clone(),
            })),
            _ => None,
        };
        Ok(Page {
            rows: page.into_iter().map(|(_, row)| row).collect(),
            next_cursor,
            total,
        })
    }
}

fn encode(cursor: &Cursor) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(cursor).unwrap_or_default())
}

fn decode(text: &str, query: &str) -> Result<Cursor, ApiError> {
    use base64::Engine as _;
    let cursor: Cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            ApiError::invalid_parameter("cursor", "is not a cursor this API returned")
        })?;
    if cursor.q != query {
        return Err(ApiError::invalid_parameter(
            "cursor",
            "belongs to a different query (keep every other parameter as it was)",
        ));
    }
    Ok(cursor)
}

/// Order two cell values: numbers numerically, text lexically; missing or
/// `null` values go last whatever the direction.
fn compare_cells(a: Option<&Value>, b: Option<&Value>, descending: bool) -> Ordering {
    fn present(v: Option<&Value>) -> Option<&Value> {
        v.filter(|v| !v.is_null())
    }
    match (present(a), present(b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => {
            let ord = compare_values(x, y);
            if descending {
                ord.reverse()
            } else {
                ord
            }
        }
    }
}

/// Identity fields: `null` first (as the answers' default order has it).
fn compare_identity(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let null = Value::Null;
    match (a.unwrap_or(&null), b.unwrap_or(&null)) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (x, y) => compare_values(x, y),
    }
}

fn compare_values(x: &Value, y: &Value) -> Ordering {
    match (x.as_f64(), y.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => x.as_str().unwrap_or("").cmp(y.as_str().unwrap_or("")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rows(values: &[(&str, f64)]) -> Vec<Map<String, Value>> {
        values
            .iter()
            .map(|(id, spend)| {
                json!({"campaign_id": id, "spend": spend})
                    .as_object()
                    .cloned()
                    .expect("object")
            })
            .collect()
    }

    fn order(keys: &[&str]) -> Order {
        Order {
            keys: keys.iter().map(|k| SortKey::parse(k)).collect(),
            identity: vec!["campaign_id".into()],
        }
    }

    fn ids(page: &Page) -> Vec<&str> {
        page.rows
            .iter()
            .map(|r| r["campaign_id"].as_str().expect("id"))
            .collect()
    }

    #[test]
    fn a_row_inserted_between_pages_never_repeats_a_row() {
        let by_id = order(&[]);
        let first = by_id
            .page(
                rows(&[("b", 1.0), ("d", 2.0), ("f", 3.0)]),
                None,
                "q",
                "v1",
                2,
            )
            .expect("page");
        assert_eq!((ids(&first), first.total), (vec!["b", "d"], 3));
        // `a` (before the cursor) and `e` arrive before page 2 is asked for.
        let later = rows(&[("a", 9.0), ("b", 1.0), ("d", 2.0), ("e", 5.0), ("f", 3.0)]);
        let second = by_id
            .page(later, first.next_cursor.as_deref(), "q", "v2", 2)
            .expect("page");
        assert_eq!(ids(&second), vec!["e", "f"]);
        assert_eq!(second.next_cursor, None);
    }

    #[test]
    fn a_metric_order_refuses_a_cursor_once_the_data_changed() {
        let by_spend = order(&["-spend"]);
        let data = rows(&[("a", 1.0), ("b", 3.0), ("c", 2.0)]);
        let first = by_spend
            .page(data.clone(), None, "q", "v1", 1)
            .expect("page");
        assert_eq!(ids(&first), vec!["b"]);
        let cursor = first.next_cursor.as_deref();
        let same = by_spend
            .page(data.clone(), cursor, "q", "v1", 5)
            .expect("page");
        assert_eq!(ids(&same), vec!["c", "a"]);
        let stale = by_spend.page(data.clone(), cursor, "q", "v2", 5);
        assert_eq!(
            stale.err().map(|e| (e.status, e.code)),
            Some((StatusCode::CONFLICT, "cursor_stale"))
        );
        let other = by_spend.page(data, cursor, "other query", "v1", 5);
        assert_eq!(other.err().map(|e| e.code), Some("invalid_parameter"));
    }

    #[test]
    fn nulls_sort_last_in_either_direction_and_ties_keep_identity_order() {
        let mut data = rows(&[("a", 1.0), ("b", 1.0), ("c", 2.0)]);
        data[0].insert("spend".into(), Value::Null);
        for keys in [["spend"], ["-spend"]] {
            let page = order(&keys)
                .page(data.clone(), None, "q", "v", 10)
                .expect("page");
            assert_eq!(ids(&page).last(), Some(&"a"), "{keys:?}");
        }
        let page = order(&["spend"])
            .page(data, None, "q", "v", 10)
            .expect("page");
        assert_eq!(ids(&page), vec!["b", "c", "a"]);
    }
}
