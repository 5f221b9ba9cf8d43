//! The buyer's pages in a real browser: headless Chromium driven through chromedriver
//! (`CHROMEDRIVER`, default `chromedriver` on the `PATH`; `.ci/run` installs Debian's
//! `chromium` and `chromium-driver`). With one active slot, browser A is admitted and buys a seat
//! through the pages; browser B, waiting behind A, is pushed its admission when A pays (it
//! neither reloads nor polls), sees A's seat sold and books another one, and reads its receipt
//! again in English. A third buyer's open seat map shows a seat a fourth holds meanwhile, and a
//! page out of view (another tab) polls instead of holding a stream. A buyer linked to a room's
//! sale before its opening is told when it opens and is let in at the opening with no click. A
//! screenshot of each step is written under `target/browser-screenshots/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, ensure};
use concert_e2e::{ADMIN_KEY, TestApp};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::Method;
use serde_json::json;
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(10);

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> anyhow::Result<Self> {
        let program = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {program} (install chromium and chromium-driver, as .ci/run does)"
                )
            })?;
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        for _ in 0..100 {
            if reqwest::get(&status)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(Self { child, url });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("{program} did not answer on port {port}")
    }

    /// A new headless browser with its own profile (its own storage: another buyer).
    async fn browser(&self, language: &str) -> anyhow::Result<Client> {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=900,1300", format!("--lang={language}"),
                ],
                "prefs": { "intl.accept_languages": language },
            }),
        );
        Ok(ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await?)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Writes a screenshot of `browser` as `target/browser-screenshots/NAME.png`.
async fn screenshot(browser: &Client, name: &str) -> anyhow::Result<()> {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/browser-screenshots");
    std::fs::create_dir_all(&directory)?;
    std::fs::write(
        directory.join(format!("{name}.png")),
        browser.screenshot().await?,
    )?;
    Ok(())
}

async fn visible(browser: &Client, section: &str) -> anyhow::Result<()> {
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&format!("#{section}:not([hidden])")))
        .await
        .with_context(|| format!("#{section} never showed"))?;
    Ok(())
}

async fn click(browser: &Client, css: &str) -> anyhow::Result<()> {
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .with_context(|| format!("no {css}"))?
        .click()
        .await?;
    Ok(())
}

async fn text(browser: &Client, css: &str) -> anyhow::Result<String> {
    Ok(browser.find(Locator::Css(css)).await?.text().await?)
}

/// Waits until `css`'s text is `wanted`.
async fn text_becomes(browser: &Client, css: &str, wanted: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = text(browser, css).await?;
        if now == wanted {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{css} reads {now:?}, not {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many status polls the page has sent.
async fn status_polls(browser: &Client) -> anyhow::Result<u64> {
    let polls = browser
        .execute(
            "return performance.getEntriesByType('resource')\
               .filter((entry) => entry.name.endsWith('/v1/queue/status')).length;",
            Vec::new(),
        )
        .await?;
    polls.as_u64().context("a count")
}

/// Makes the page believe it went out of view (another tab) or came back.
async fn set_hidden(browser: &Client, hidden: bool) -> anyhow::Result<()> {
    browser
        .execute(
            "Object.defineProperty(document, 'hidden', { configurable: true, get: () => arguments[0] });\
             document.dispatchEvent(new Event('visibilitychange'));",
            vec![json!(hidden)],
        )
        .await?;
    Ok(())
}

/// Picks the concert and its date: the seat map shows.
async fn open_seat_map(browser: &Client) -> anyhow::Result<()> {
    click(browser, "#concerts button").await?;
    click(browser, "#dates button").await?;
    visible(browser, "seat-area").await
}

/// Adds points, holds `seat` on the open seat map and pays; screenshots named `who-step-…`
/// from `step` on.
async fn book(browser: &Client, who: &str, step: u32, seat: u32) -> anyhow::Result<()> {
    browser
        .find(Locator::Css("#charge-amount"))
        .await?
        .send_keys("5000")
        .await?;
    click(browser, "#charge-form button[type=submit]").await?;
    text_becomes(browser, "#balance", "5000").await?;
    screenshot(browser, &format!("{who}-{step}-seat-map")).await?;
    click(browser, &format!("#seats button.free[data-seat='{seat}']")).await?;
    visible(browser, "hold").await?;
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&format!(
            "#seats button.mine[data-seat='{seat}']"
        )))
        .await?;
    screenshot(browser, &format!("{who}-{}-held", step + 1)).await?;
    click(browser, "#pay-button").await?;
    visible(browser, "done").await?;
    screenshot(browser, &format!("{who}-{}-booked", step + 2)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_buyers_wait_and_book_through_the_pages() -> anyhow::Result<()> {
    let app = TestApp::spawn_with(|config| config.queue_max_active = 1).await?;
    let admin = &app.client;
    let concert = admin
        .send(
            admin
                .raw(Method::POST, "/v1/admin/concerts")
                .bearer_auth(ADMIN_KEY)
                .json(&json!({
                    "title": "Winter Gala",
                    "dates": [{ "date": "2030-12-24", "price": 1200, "seatCount": 20 }],
                })),
        )
        .await?;
    ensure!(concert.status.is_success(), "{}", concert.text);
    let base = admin.url("/");
    let driver = Driver::start().await?;
    let a = driver.browser("en").await?;
    let b = driver.browser("ko").await?;

    // A joins an empty line: admitted at once.
    a.goto(&base).await?;
    click(&a, "#join-button").await?;
    visible(&a, "shop").await?;
    screenshot(&a, "a-1-admitted").await?;

    // B joins behind A and waits, in Korean.
    b.goto(&base).await?;
    ensure!(
        text(&b, "#join-button").await? == "줄 서기",
        "the page speaks Korean"
    );
    click(&b, "#join-button").await?;
    visible(&b, "waiting").await?;
    text_becomes(&b, "#position", "1").await?;
    screenshot(&b, "b-1-waiting").await?;

    // A buys seat 3; B is pushed its turn when A's payment frees the slot.
    open_seat_map(&a).await?;
    book(&a, "a", 2, 3).await?;
    visible(&b, "shop").await?;
    screenshot(&b, "b-2-admitted").await?;
    let polls = status_polls(&b).await?;
    ensure!(
        polls == 0,
        "B polled {polls} times: its turn was not pushed"
    );

    // B sees A's seat sold and books another.
    open_seat_map(&b).await?;
    b.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#seats button.sold[data-seat='3']"))
        .await
        .context("A's seat is not shown sold")?;
    book(&b, "b", 3, 4).await?;
    let receipt = text(&b, "#receipt").await?;
    ensure!(
        receipt.contains("4번 좌석"),
        "B's receipt names seat 4: {receipt}"
    );
    // Switched to English, the page says it all again, the receipt included.
    click(&b, "#language").await?;
    text_becomes(&b, "#language", "한국어").await?;
    let receipt = text(&b, "#receipt").await?;
    ensure!(
        receipt.contains("Seat 4 on"),
        "the receipt in English: {receipt}"
    );
    screenshot(&b, "b-6-english").await?;

    // A buyer with another tab: a page out of view polls instead of holding a stream, and goes
    // back to the stream when in view again.
    let c = driver.browser("en").await?;
    c.goto(&base).await?;
    click(&c, "#join-button").await?;
    visible(&c, "shop").await?;
    // C's open seat map shows a seat someone else holds meanwhile, without a click.
    open_seat_map(&c).await?;
    let room = admin
        .send(
            admin
                .raw(Method::PATCH, "/v1/admin/rooms/default")
                .bearer_auth(ADMIN_KEY)
                .json(&json!({ "maxActive": 2 })),
        )
        .await?;
    ensure!(room.status.is_success(), "{}", room.text);
    let other = admin.active_token(uuid::Uuid::new_v4()).await?;
    let held = admin
        .send(
            admin
                .raw(Method::POST, "/v1/reservations")
                .bearer_auth(&other)
                .json(&json!({ "concertId": concert.body["concertId"], "date": "2030-12-24", "seatNo": 7 })),
        )
        .await?;
    ensure!(held.status.is_success(), "{}", held.text);
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#seats button.held[data-seat='7']"))
        .await
        .context("C's seat map did not show seat 7 held")?;
    screenshot(&c, "c-1-seat-map-live").await?;
    let d = driver.browser("en").await?;
    d.goto(&base).await?;
    click(&d, "#join-button").await?;
    visible(&d, "waiting").await?;
    set_hidden(&d, true).await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while status_polls(&d).await? == 0 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "a hidden page did not poll"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    set_hidden(&d, false).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = status_polls(&d).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(
        status_polls(&d).await? == before,
        "a page in view polled instead of using the stream"
    );
    c.close().await?;
    d.close().await?;

    a.close().await?;
    b.close().await?;
    drop(driver);
    app.shutdown().await
}

/// A sale with a waiting room of its own, linked as `/?room=…`: before the opening the page
/// tells when the sale opens and that the order will be fair, and at the opening it moves on by
/// itself to the buyer's turn.
#[tokio::test(flavor = "multi_thread")]
async fn a_buyer_in_a_pre_queue_is_told_the_opening_and_let_in_at_it() -> anyhow::Result<()> {
    let app = TestApp::spawn_with(|_| {}).await?;
    let admin = &app.client;
    let concert = admin
        .send(
            admin
                .raw(Method::POST, "/v1/admin/concerts")
                .bearer_auth(ADMIN_KEY)
                .json(&json!({
                    "title": "Spring Gala",
                    "dates": [{ "date": "2030-04-01", "price": 1000, "seatCount": 10 }],
                })),
        )
        .await?;
    ensure!(concert.status.is_success(), "{}", concert.text);
    let concert_id = concert.body["concertId"].clone();
    // The browser first: on a busy machine starting it takes seconds, and the opening must come
    // after the buyer has read the pre-queue page.
    let driver = Driver::start().await?;
    let buyer = driver.browser("en").await?;
    buyer.goto(&admin.url("/")).await?;
    let opens_at = time::OffsetDateTime::now_utc() + time::Duration::seconds(8);
    let room = admin
        .send(
            admin
                .raw(Method::POST, "/v1/admin/rooms")
                .bearer_auth(ADMIN_KEY)
                .json(&json!({
                    "roomId": "spring-gala",
                    "concertIds": [concert_id],
                    "maxActive": 5,
                    "opensAt": opens_at.format(&time::format_description::well_known::Rfc3339)?,
                    "shuffleAtOpen": true,
                })),
        )
        .await?;
    ensure!(room.status.as_u16() == 201, "{}", room.text);

    buyer.goto(&admin.url("/?room=spring-gala")).await?;
    click(&buyer, "#join-button").await?;
    visible(&buyer, "waiting").await?;
    let told = text(&buyer, "#ahead").await?;
    ensure!(
        time::OffsetDateTime::now_utc() < opens_at,
        "the room opened before the page was read (machine too slow for an 8 s margin)"
    );
    ensure!(
        told.starts_with("The sale opens at") && told.contains("fair order"),
        "the pre-queue page says {told:?}"
    );
    ensure!(text(&buyer, "#position").await? == "–", "no position yet");
    screenshot(&buyer, "pre-queue-1-waiting-for-the-opening").await?;

    // The opening comes within a second of opensAt; the page moves on with no click.
    buyer
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#shop:not([hidden])"))
        .await
        .context("the page did not move on at the opening")?;
    screenshot(&buyer, "pre-queue-2-admitted-at-the-opening").await?;

    buyer.close().await?;
    drop(driver);
    app.shutdown().await
}
