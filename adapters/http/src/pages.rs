//! The buyer's pages (docs/API.md §12): HTML, CSS and plain JavaScript embedded in the binary and
//! served at `/`, `/app.js` and `/app.css`, so a fresh machine needs no build step and no CDN.
//! The page starts in the language `Accept-Language` prefers (Korean or English); a button
//! switches it. An operator's template (`PAGES_DIR`) may replace the page, with its own files
//! under `/assets/`.

use std::path::PathBuf;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// The embedded page.
pub const INDEX: &str = include_str!("../pages/index.html");
const SCRIPT: &str = include_str!("../pages/app.js");
const STYLE: &str = include_str!("../pages/app.css");

/// Only this origin's scripts, styles and API; no inline code, no framing.
pub const PAGES_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

/// The languages the pages speak, the first the default.
const LANGUAGES: [&str; 2] = ["en", "ko"];

/// An operator's own page in place of the embedded one.
#[derive(Debug, Clone)]
pub struct PagesTemplate {
    /// The page's HTML; `{{lang}}` becomes `ko` or `en`.
    pub index: String,
    /// Its own files, served at `/assets/`.
    pub assets: PathBuf,
}

/// `GET /`: the page, in the language the browser prefers.
pub async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let language = preferred_language(
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default(),
    );
    let page = state.page.replace("{{lang}}", language);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                PAGES_CONTENT_SECURITY_POLICY,
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::VARY, "Accept-Language"),
        ],
        page,
    )
        .into_response()
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// The spoken language `Accept-Language` ranks highest (`ko-KR,ko;q=0.9,en;q=0.8` → `ko`);
/// English when it names neither.
fn preferred_language(accept: &str) -> &'static str {
    let mut best: Option<(&'static str, f32)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let quality = parts
            .find_map(|part| part.trim().strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let primary = tag.split('-').next().unwrap_or_default();
        let Some(language) = LANGUAGES.into_iter().find(|known| *known == primary) else {
            continue;
        };
        if quality > 0.0 && best.is_none_or(|(_, q)| quality > q) {
            best = Some((language, quality));
        }
    }
    best.map_or(LANGUAGES[0], |(language, _)| language)
}

#[cfg(test)]
mod tests {
    use super::preferred_language;

    #[test]
    fn the_language_is_the_best_ranked_one_spoken_here() {
        assert_eq!(
            preferred_language("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7"),
            "ko"
        );
        assert_eq!(preferred_language("en-GB,en;q=0.9,ko;q=0.8"), "en");
        assert_eq!(preferred_language("fr-FR,fr;q=0.9,ko;q=0.5,en;q=0.4"), "ko");
        assert_eq!(preferred_language("de, en;q=0"), "en");
        assert_eq!(preferred_language("ko;q=0, en;q=0.1"), "en");
        assert_eq!(preferred_language(""), "en");
        assert_eq!(preferred_language("*"), "en");
    }
}
