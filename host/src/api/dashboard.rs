//! The built-in dashboard: `GET /` (the page) and `GET /assets/{file}` (its
//! script, styles and the pinned uPlot build), embedded in the binary so the
//! page works offline with nothing but `adpipe serve`. Public, as the contract
//! allows: they hold no data — the page asks the API for everything with the
//! token the user pastes (kept in the browser's `sessionStorage`). Served with
//! a Content-Security-Policy that allows only this origin's scripts, styles
//! and API. The files are in `host/assets/dashboard/` (its README says where
//! uPlot comes from and how to update it).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::openapi::ErrorBody;
use super::{ApiError, PathParam};

/// Only this origin: scripts, styles, API calls; images may be `data:` (charts).
/// (`nosniff`, `no-referrer` and `DENY` framing come with every answer.)
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The page's files: (name under `/assets/`, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/dashboard/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/dashboard/app.css"),
    ),
    (
        "uplot.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/dashboard/uplot.min.js"),
    ),
    (
        "uplot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/dashboard/uplot.min.css"),
    ),
];

const INDEX: &[u8] = include_bytes!("../../assets/dashboard/index.html");

fn hardened(mut response: Response, content_type: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    // Revalidate: a new adpipe version brings new files under the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /`: the dashboard page.
#[utoipa::path(get, path = "/", tag = "dashboard",
    description = "The built-in dashboard (HTML). Public: it holds no data; it asks the API with the token you paste.",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub async fn page() -> Response {
    hardened(INDEX.into_response(), "text/html; charset=utf-8")
}

/// `GET /assets/{file}`: one of the page's files.
#[utoipa::path(get, path = "/assets/{file}", tag = "dashboard",
    description = "A static file of the dashboard (script, styles, the pinned uPlot build).",
    params(("file" = String, Path, description = "File name: app.js, app.css, uplot.min.js or uplot.min.css")),
    responses((status = 200, description = "The file", content_type = "text/javascript", body = String),
        (status = 404, body = ErrorBody)))]
pub async fn asset(PathParam(file): PathParam) -> Result<Response, ApiError> {
    let (_, content_type, bytes) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_asset",
                format!("the dashboard has no file `{file}`"),
            )
        })?;
    Ok(hardened(
        (StatusCode::OK, *bytes).into_response(),
        content_type,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_folder_is_served_and_nothing_else() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/dashboard");
        let mut served: Vec<&str> = ASSETS.iter().map(|(n, _, _)| *n).collect();
        served.push("index.html");
        served.sort_unstable();
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("assets")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".js") || n.ends_with(".css") || n.ends_with(".html"))
            .collect();
        on_disk.sort();
        assert_eq!(served, on_disk);
    }
}
