//! The buyer's pages: served in the browser's language, with their assets and a strict content
//! security policy. (The pages themselves run in a real browser in the end-to-end tests.)

use axum::http::StatusCode;

use super::{app, get};

#[tokio::test]
async fn the_buyers_page_is_served_in_the_browsers_language_with_its_assets() {
    let app = app().await;
    let korean = get("/")
        .header("accept-language", "ko-KR,ko;q=0.9,en;q=0.8")
        .send(&app)
        .await;
    assert_eq!(korean.status, StatusCode::OK);
    assert_eq!(
        korean.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let page = String::from_utf8(korean.body.to_vec()).expect("UTF-8");
    assert!(page.contains(r#"<html lang="ko">"#), "{page}");
    assert!(page.contains("<noscript>"), "a message without JavaScript");
    assert!(page.contains(r#"aria-live="polite""#));
    let policy = korean.header("content-security-policy").expect("a CSP");
    assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe"));
    assert_eq!(korean.header("x-frame-options"), Some("DENY"));

    let english = get("/").send(&app).await;
    let page = String::from_utf8(english.body.to_vec()).expect("UTF-8");
    assert!(page.contains(r#"<html lang="en">"#));

    for (path, kind) in [("/app.js", "text/javascript"), ("/app.css", "text/css")] {
        let asset = get(path).send(&app).await;
        assert_eq!(asset.status, StatusCode::OK, "{path}");
        assert!(
            asset
                .header("content-type")
                .is_some_and(|t| t.starts_with(kind)),
            "{path}"
        );
        assert!(!asset.body.is_empty());
    }
}

#[tokio::test]
async fn an_operators_template_replaces_the_page_and_serves_its_assets() {
    let directory = std::env::temp_dir().join(format!("concert-pages-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(directory.join("assets")).expect("a directory");
    std::fs::write(directory.join("assets/brand.css"), "body { color: teal; }").expect("a file");
    let app = crate::router_with(
        super::use_cases(super::Scenario::default()).await,
        crate::RouterOptions {
            pages: Some(crate::pages::PagesTemplate {
                index:
                    r#"<html lang="{{lang}}"><p id="position"></p><script src="/app.js"></script>"#
                        .to_owned(),
                assets: directory.join("assets"),
            }),
            ..crate::RouterOptions::default()
        },
    );
    let page = get("/").header("accept-language", "ko").send(&app).await;
    let html = String::from_utf8(page.body.to_vec()).expect("UTF-8");
    assert_eq!(
        html,
        r#"<html lang="ko"><p id="position"></p><script src="/app.js"></script>"#
    );
    assert!(page.header("content-security-policy").is_some());
    let style = get("/assets/brand.css").send(&app).await;
    assert_eq!(style.status, StatusCode::OK);
    assert!(
        style
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/css"))
    );
    get("/assets/missing.css")
        .send(&app)
        .await
        .problem(404, "NOT_FOUND");
    assert_eq!(get("/app.js").send(&app).await.status, StatusCode::OK);
    std::fs::remove_dir_all(&directory).expect("cleaned up");
}
