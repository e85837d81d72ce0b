//! The floor under every adapter's sandbox ratio: the least work a JSON
//! adapter can do, compiled twice from one source.
//!
//! [`read_page`] reads a Meta insights page (the fields the Meta adapter
//! reads, borrowed from the body) with `serde_json`'s derive, and does
//! nothing per row but add up lengths so that nothing is optimised away: no
//! rows built, no interning, no numbers parsed. [`check_utf8`] is the
//! standard library's UTF-8 check over the same bytes. The adapter benchmark
//! (`floor/*`) runs both natively and as a bare core module
//! (`wasm32-unknown-unknown`, no WASI, no component model) in the host's
//! engine, on memory already inside the instance, so the ratio it reports is
//! the compiled code's own: what Cranelift's code for wasm32 costs against
//! LLVM's for x86-64, before any host call, copy or instance set-up. No
//! adapter built on these libraries can have a lower sandbox ratio than this.

use serde::Deserialize;

/// One page of `GET /{ad_account}/insights`.
#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    data: Vec<Insight<'a>>,
}

/// One insight, the fields the Meta adapter reads.
#[derive(Deserialize)]
struct Insight<'a> {
    #[serde(borrow, default)]
    account_id: Option<&'a str>,
    #[serde(borrow, default)]
    account_currency: Option<&'a str>,
    #[serde(borrow, default)]
    campaign_id: Option<&'a str>,
    #[serde(borrow, default)]
    campaign_name: Option<&'a str>,
    #[serde(borrow, default)]
    adset_id: Option<&'a str>,
    #[serde(borrow, default)]
    ad_id: Option<&'a str>,
    #[serde(borrow)]
    date_start: &'a str,
    #[serde(borrow, default)]
    date_stop: Option<&'a str>,
    #[serde(borrow, default)]
    impressions: Option<&'a str>,
    #[serde(borrow, default)]
    clicks: Option<&'a str>,
    #[serde(borrow, default)]
    spend: Option<&'a str>,
    #[serde(borrow, default)]
    reach: Option<&'a str>,
    #[serde(borrow, default)]
    actions: Vec<Action<'a>>,
    #[serde(borrow, default)]
    action_values: Vec<Action<'a>>,
}

#[derive(Deserialize)]
struct Action<'a> {
    #[serde(borrow)]
    action_type: &'a str,
    #[serde(borrow)]
    value: &'a str,
}

fn len(field: Option<&str>) -> u64 {
    field.map_or(0, |s| s.len() as u64)
}

/// Read a page the way the SDK's `json::from_body` does (the body's UTF-8
/// checked once, then read as text); the sum of the lengths of every field
/// read (0 when the body is not such a page).
pub fn read_page(body: &[u8]) -> u64 {
    let Ok(text) = std::str::from_utf8(body) else {
        return 0;
    };
    let Ok(page) = serde_json::from_str::<Page<'_>>(text) else {
        return 0;
    };
    page.data
        .iter()
        .map(|i| {
            [
                i.account_id,
                i.account_currency,
                i.campaign_id,
                i.campaign_name,
                i.adset_id,
                i.ad_id,
                i.date_stop,
                i.impressions,
                i.clicks,
                i.spend,
                i.reach,
            ]
            .into_iter()
            .map(len)
            .sum::<u64>()
                + i.date_start.len() as u64
                + i.actions
                    .iter()
                    .chain(&i.action_values)
                    .map(|a| (a.action_type.len() + a.value.len()) as u64)
                    .sum::<u64>()
        })
        .sum()
}

/// The standard library's UTF-8 check; the body's length when it passes.
pub fn check_utf8(body: &[u8]) -> u64 {
    std::str::from_utf8(body).map_or(0, |s| s.len() as u64)
}

/// The core module's exports: memory for the body, and the two kernels.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // a bare core module's ABI is pointers and lengths
mod exports {
    /// `len` bytes of the instance's memory, for the host to write a body into.
    #[unsafe(no_mangle)]
    pub extern "C" fn floor_alloc(len: usize) -> *mut u8 {
        let mut buffer = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(len));
        buffer.as_mut_ptr()
    }

    /// # Safety
    /// `ptr..ptr + len` is a buffer from [`floor_alloc`] the host filled.
    unsafe fn body<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
        // SAFETY: the caller's contract above.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }

    #[unsafe(no_mangle)]
    pub extern "C" fn floor_read_page(ptr: *const u8, len: usize) -> u64 {
        // SAFETY: the host passes back what `floor_alloc` gave it, filled.
        super::read_page(unsafe { body(ptr, len) })
    }

    #[unsafe(no_mangle)]
    pub extern "C" fn floor_check_utf8(ptr: *const u8, len: usize) -> u64 {
        // SAFETY: as above.
        super::check_utf8(unsafe { body(ptr, len) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_documented_page_and_counts_its_fields() {
        let body = br#"{"data":[{"account_id":"123","campaign_id":"9","date_start":"2026-11-01",
            "date_stop":"2026-11-01","impressions":"1000","spend":"1.50","cpc":"0.5",
            "actions":[{"action_type":"link_click","value":"15"}]}],
            "paging":{"cursors":{"before":"MA","after":"MQ"}}}"#;
        // 3 + 1 + 10 + 10 + 4 + 4, and "link_click" + "15".
        assert_eq!(read_page(body), 32 + 12);
        assert_eq!(check_utf8(body), body.len() as u64);
    }

    #[test]
    fn refuses_what_is_not_a_page() {
        assert_eq!(read_page(b"{\"data\":[{}]}"), 0, "date_start is required");
        assert_eq!(read_page(b"[1,2]"), 0);
        assert_eq!(check_utf8(b"\xff"), 0);
    }
}
