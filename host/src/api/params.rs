//! Query parameters, held to what each route documents.
//!
//! The guard ([`super::guard`]) checks every request's query string against
//! the query parameters its route's OpenAPI operation declares
//! ([`super::RouteSpec::query`]): an undeclared name is `400
//! invalid_parameter` naming what the route accepts, and a parameter
//! declared as one value may not repeat. List parameters (declared as arrays,
//! `style: form`, `explode: false`) may be written `a,b` or repeated; the
//! [`Params`] extractor merges repeats. Webhook routes are exempt: platforms
//! add parameters of their own there.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::Uri;

use super::ApiError;

/// One declared query parameter of a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryParam {
    pub name: &'static str,
    /// Declared as an array: comma-separated and/or repeated values.
    pub list: bool,
}

/// A request's query pairs, in order, as the guard checked them (kept in
/// the request's extensions for [`Params`]).
#[derive(Clone, Debug, Default)]
pub struct QueryPairs(Vec<(String, String)>);

/// The query string's pairs, in order; a malformed one is `400 invalid_parameter`.
fn pairs(uri: &Uri) -> Result<QueryPairs, ApiError> {
    if uri.query().is_none() {
        return Ok(QueryPairs::default());
    }
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|axum::extract::Query(pairs)| QueryPairs(pairs))
        .map_err(|e| ApiError::invalid_parameter("query", e.body_text()))
}

/// Check `uri`'s query against the route's `declared` parameters; the
/// checked pairs.
pub fn check(declared: &[QueryParam], uri: &Uri) -> Result<QueryPairs, ApiError> {
    let pairs = pairs(uri)?;
    let mut seen: Vec<&str> = Vec::new();
    for (name, _) in &pairs.0 {
        let Some(param) = declared.iter().find(|p| p.name == name) else {
            let accepted = if declared.is_empty() {
                "this route takes no query parameters".to_owned()
            } else {
                format!(
                    "accepted: {}",
                    declared
                        .iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(ApiError::invalid_parameter(
                name,
                format!("unknown parameter ({accepted})"),
            ));
        };
        if !param.list && seen.contains(&param.name) {
            return Err(ApiError::invalid_parameter(
                name,
                "given more than once; it takes one value",
            ));
        }
        seen.push(param.name);
    }
    Ok(pairs)
}

/// Query parameters by name; a list parameter given more than once holds
/// its values joined by commas, as if written `a,b`.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let pairs = match parts.extensions.remove::<QueryPairs>() {
            Some(checked) => checked,
            None => pairs(&parts.uri)?,
        };
        let mut params: HashMap<String, String> = HashMap::new();
        for (name, value) in pairs.0 {
            params
                .entry(name)
                .and_modify(|joined| {
                    joined.push(',');
                    joined.push_str(&value);
                })
                .or_insert(value);
        }
        Ok(Params(params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECLARED: &[QueryParam] = &[
        QueryParam {
            name: "from",
            list: false,
        },
        QueryParam {
            name: "metrics",
            list: true,
        },
    ];

    fn uri(query: &str) -> Uri {
        format!("/v1/insights?{query}").parse().expect("uri")
    }

    #[test]
    fn undeclared_and_repeated_scalar_parameters_are_refused_lists_may_repeat() {
        assert!(check(
            DECLARED,
            &uri("from=2026-01-01&metrics=spend&metrics=clicks")
        )
        .is_ok());
        let unknown = check(DECLARED, &uri("from=2026-01-01&form=x")).expect_err("unknown");
        assert_eq!(unknown.code, "invalid_parameter");
        assert!(unknown.message.contains("`form`"), "{}", unknown.message);
        assert!(
            unknown.message.contains("from, metrics"),
            "{}",
            unknown.message
        );
        let twice = check(DECLARED, &uri("from=2026-01-01&from=2026-01-02")).expect_err("twice");
        assert!(
            twice.message.contains("more than once"),
            "{}",
            twice.message
        );
        let none = check(&[], &uri("x=1")).expect_err("none declared");
        assert!(
            none.message.contains("takes no query parameters"),
            "{}",
            none.message
        );
        assert!(check(&[], &"/healthz".parse().expect("uri")).is_ok());
    }

    #[tokio::test]
    async fn repeated_list_values_are_merged_in_order() {
        let request = axum::http::Request::builder()
            .uri(uri("metrics=spend&metrics=clicks,ctr&from=2026-01-01"))
            .body(())
            .expect("request");
        let (mut parts, ()) = request.into_parts();
        let Params(params) = Params::from_request_parts(&mut parts, &())
            .await
            .map_err(|e| e.message)
            .expect("params");
        assert_eq!(params["metrics"], "spend,clicks,ctr");
        assert_eq!(params["from"], "2026-01-01");
    }
}
