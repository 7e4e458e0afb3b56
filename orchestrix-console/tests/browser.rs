//! The console in a real browser: headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`, through fantoccini).
//!
//! Ignored with the reason when Chromium or its driver is missing; under
//! `CI` it always runs (ADR 0037). With `ORCHESTRIX_CONSOLE_SCREENSHOTS=dir`
//! it saves screenshots of the main pages there (`just console-screenshots`
//! writes `docs/console/`).

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use orchestrix::store::DeadLetterStore;
use orchestrix::Metadata;
use support::*;

/// The WebDriver binary: `ORCHESTRIX_CHROMEDRIVER`, else Debian's.
fn driver_path() -> String {
    std::env::var("ORCHESTRIX_CHROMEDRIVER")
        .ok()
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| "/usr/bin/chromedriver".into())
}

/// A free port on the loopback interface (bound, then released for the driver).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// chromedriver, stopped by its process id when dropped.
struct Driver(tokio::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

async fn start_driver() -> (Driver, Client) {
    let port = free_port();
    let child = tokio::process::Command::new(driver_path())
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error} (install chromium-driver)", driver_path()));
    let driver = Driver(child);
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]}),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return (driver, client),
            Err(error) if Instant::now() > deadline => panic!("chromedriver did not answer in 20 s: {error}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Serves `app` on 127.0.0.1 (a port of the system's choice).
async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

async fn screenshot(client: &Client, name: &str) {
    let Some(dir) = std::env::var_os("ORCHESTRIX_CONSOLE_SCREENSHOTS") else { return };
    let png = client.screenshot().await.unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
}

/// Waits up to `within` for `selector` to match.
async fn wait_for(client: &Client, selector: &str, within: Duration) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(within)
        .for_element(Locator::Css(selector))
        .await
        .unwrap_or_else(|error| panic!("{selector}: {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(orchestrix_browser), ignore = "needs Chromium and chromedriver (Debian: chromium chromium-driver)")]
async fn the_console_in_a_real_browser() {
    let fixture = Fixture::new().await;
    let address = serve(mounted(fixture.console().write_token(TOKEN))).await;
    let base = format!("http://{address}/orchestrix");
    let (_driver, client) = start_driver().await;

    // The streams, and a stream's events rendered.
    client.goto(&base).await.unwrap();
    wait_for(&client, "table#streams", Duration::from_secs(5)).await;
    screenshot(&client, "streams").await;
    client.goto(&format!("{base}/stream?id=Account/1")).await.unwrap();
    let events = client.find_all(Locator::Css("article.event")).await.unwrap();
    assert_eq!(events.len(), 2);
    let types: Vec<String> = {
        let mut types = Vec::new();
        for element in client.find_all(Locator::Css("article.event .event-type")).await.unwrap() {
            types.push(element.text().await.unwrap());
        }
        types
    };
    assert_eq!(types, ["AccountOpened", "MoneyDeposited"]);
    assert!(client
        .find(Locator::Css("article.event pre.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("\"owner\": \"Ada\""));
    screenshot(&client, "stream").await;

    // An event's causality, followed by clicking.
    client.goto(&format!("{base}/events/{}", fixture.noted.id)).await.unwrap();
    screenshot(&client, "event").await;
    client.find(Locator::Css("#caused-by ol.chain li a")).await.unwrap().click().await.unwrap();
    let heading = wait_for(&client, "h1 .event-type", Duration::from_secs(5)).await;
    assert_eq!(heading.text().await.unwrap(), "AccountOpened", "the chain starts at the origin");

    // The hostile stream renders as text; no script of its ran.
    client.goto(&format!("{base}/stream?id=Account/{}", percent(HOSTILE))).await.unwrap();
    assert_eq!(
        client.find(Locator::Id("stream-name")).await.unwrap().text().await.unwrap(),
        format!("Account/{HOSTILE}")
    );
    let alert = client.get_alert_text().await;
    assert!(alert.is_err(), "a script from the data ran: {alert:?}");

    // The tail shows a new event within two seconds of its append.
    client.goto(&format!("{base}/tail")).await.unwrap();
    wait_for(&client, "#tail-status[data-state=live]", Duration::from_secs(5)).await;
    let appended = append(
        &fixture.events,
        "Account/77",
        new_event("MoneyDeposited", serde_json::json!({"amount": 5}), Metadata::default()),
    )
    .await;
    let started = Instant::now();
    wait_for(&client, &format!("#tail tbody tr[data-id=\"{}\"]", appended.id), Duration::from_secs(2)).await;
    let shown_after = started.elapsed();
    assert!(shown_after < Duration::from_secs(2), "{shown_after:?}");
    println!("tail: the appended event showed after {shown_after:?}");
    screenshot(&client, "tail").await;

    // Not signed in: the page offers no action, and a forged post is refused.
    let letter = fixture.dead_letters.list(None).await.unwrap().remove(0);
    client.goto(&format!("{base}/dead-letters")).await.unwrap();
    assert!(client.find_all(Locator::Css("button.retry")).await.unwrap().is_empty());
    let status = client
        .execute_async(
            "const [url, done] = arguments; fetch(url, {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'}, body: 'csrf=forged'}).then(r => done(r.status), e => done(String(e)));",
            vec![serde_json::json!(format!("{base}/dead-letters/{}/retry", letter.id))],
        )
        .await
        .unwrap();
    assert_eq!(status, serde_json::json!(403), "an action without the token is refused");
    assert_eq!(fixture.dead_letters.list(None).await.unwrap().len(), 1);

    // Signed in with the token, a dead letter retried from the page is applied and disappears.
    client.find(Locator::Css("#sign-in input[name=token]")).await.unwrap().send_keys(TOKEN).await.unwrap();
    client.find(Locator::Css("#sign-in button")).await.unwrap().click().await.unwrap();
    let retry = wait_for(&client, "button.retry", Duration::from_secs(5)).await;
    screenshot(&client, "dead-letters").await;
    fixture.healed.store(true, Ordering::SeqCst);
    let before = fixture.applied.load(Ordering::SeqCst);
    retry.click().await.unwrap();
    wait_for(&client, "#no-letters", Duration::from_secs(5)).await;
    assert_eq!(client.find(Locator::Id("notice")).await.unwrap().text().await.unwrap(), "Retried.");
    assert_eq!(fixture.applied.load(Ordering::SeqCst), before + 1, "the event was applied");
    assert!(fixture.dead_letters.list(None).await.unwrap().is_empty());
    let source = client.source().await.unwrap();
    assert!(!source.contains(TOKEN), "the token never reaches a page");

    client.goto(&format!("{base}/projections")).await.unwrap();
    wait_for(&client, "table#projections", Duration::from_secs(5)).await;
    screenshot(&client, "projections").await;

    // On a phone's width the stream page still reads.
    client.set_window_size(390, 844).await.unwrap();
    client.goto(&format!("{base}/stream?id=Account/1")).await.unwrap();
    let width: serde_json::Value = client.execute("return document.documentElement.scrollWidth", vec![]).await.unwrap();
    assert!(width.as_u64().unwrap() <= 400, "no horizontal scrolling on a phone: {width}");
    screenshot(&client, "stream-phone").await;

    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(orchestrix_browser), ignore = "needs Chromium and chromedriver (Debian: chromium chromium-driver)")]
async fn a_tenants_view_in_the_browser_lists_only_its_streams() {
    let fixture = Fixture::new().await;
    append(
        &tenant(&fixture.events, "acme"),
        "Account/acme-only",
        new_event("AccountOpened", serde_json::json!({}), Metadata::default()),
    )
    .await;
    append(
        &tenant(&fixture.events, "globex"),
        "Account/globex-only",
        new_event("AccountOpened", serde_json::json!({}), Metadata::default()),
    )
    .await;
    let address = serve(mounted(fixture.console().tenants(["acme", "globex"]).unwrap())).await;
    let (_driver, client) = start_driver().await;
    client.goto(&format!("http://{address}/orchestrix")).await.unwrap();
    client.find(Locator::LinkText("acme")).await.unwrap().click().await.unwrap();
    let table = wait_for(&client, "table#streams", Duration::from_secs(5)).await;
    let listed = table.text().await.unwrap();
    assert!(
        listed.contains("Account/acme-only") && !listed.contains("globex") && !listed.contains("Account/1"),
        "{listed}"
    );
    assert_eq!(client.find(Locator::Id("current-tenant")).await.unwrap().text().await.unwrap(), "acme");
    screenshot(&client, "tenant").await;
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(orchestrix_browser), ignore = "needs Chromium and chromedriver (Debian: chromium chromium-driver)")]
async fn the_search_time_travel_and_saga_pages_read_on_a_phone() {
    use support::book::{Book, Ledger};
    let fixture = Fixture::new().await;
    let opened = Ledger::Opened { customer_id: "c-1".into(), owner: Some("Ada".into()) };
    append(&fixture.events, "Book/1", encoded(&opened)).await;
    append(&fixture.events, "Book/1", encoded(&Ledger::Deposited { amount: 10 })).await;
    sagas(&fixture.events).await;
    let address = serve(mounted(fixture.console().aggregate::<Book>())).await;
    let base = format!("http://{address}/orchestrix");
    let (_driver, client) = start_driver().await;
    let pages = [
        ("search", format!("{base}?type=Account&since=2000-01-01T00:00")),
        ("time-travel", format!("{base}/stream?id=Book/1&at=1")),
        ("sagas", format!("{base}/sagas")),
        ("saga", format!("{base}/saga?id=saga-Transfer/{COMPENSATING}")),
    ];
    for (name, url) in &pages {
        client.goto(url).await.unwrap();
        wait_for(&client, "main h1", Duration::from_secs(5)).await;
        screenshot(&client, name).await;
    }
    client.goto(&pages[1].1).await.unwrap();
    let json = wait_for(&client, "#state-json", Duration::from_secs(5)).await.text().await.unwrap();
    assert!(json.contains("\"balance\": 0") && json.contains("\"owner\": \"Ada\""), "{json}");
    client.set_window_size(390, 844).await.unwrap();
    for (name, url) in &pages {
        client.goto(url).await.unwrap();
        wait_for(&client, "main h1", Duration::from_secs(5)).await;
        let width: serde_json::Value =
            client.execute("return document.documentElement.scrollWidth", vec![]).await.unwrap();
        assert!(width.as_u64().unwrap() <= 400, "{name}: no horizontal scrolling on a phone: {width}");
    }
    screenshot(&client, "saga-phone").await;
    client.close().await.unwrap();
}
