//! The check of [`EventStore::list_streams`] (ADR 0041).

use std::sync::Arc;

use super::support::{batch, expect_eq, ok, within};
use crate::store::{EventStore, ExpectedVersion, StreamListing, StreamSummary};
use crate::stream::StreamId;

fn names(page: &[StreamSummary]) -> Vec<String> {
    page.iter().map(|summary| summary.stream.to_string()).collect()
}

/// `list_streams` lists every stream once with its version, event count
/// and last position, in bytewise `(type, id)` order (`B` before `a`,
/// `10` before `2`, `z` before `é`), filtered by type and id prefix, in
/// pages that continue after the last stream of the previous one.
pub async fn streams_are_listed_in_pages<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::streams_are_listed_in_pages";
    let page_of = |listing: StreamListing| {
        let store = &store;
        async move { ok(CHECK, "list_streams", within(CHECK, "list_streams", store.list_streams(&listing)).await) }
    };
    expect_eq(CHECK, "streams of an empty store", &names(&page_of(StreamListing::new(10)).await), &Vec::new());
    let streams = [
        ("Account", "acme/2", 2),
        ("Account", "acme/10", 3),
        ("Account", "z", 1),
        ("Account", "é", 1),
        ("Account", "B", 1),
        ("account", "a", 1),
        ("Order", "1", 4),
    ];
    let mut last_positions = Vec::new();
    for (category, id, count) in streams {
        let stream = StreamId::new(category, id).expect("a valid stream id");
        let recorded = ok(
            CHECK,
            "append",
            within(CHECK, "append", store.append(&stream, ExpectedVersion::NoStream, batch("Happened", 1, count)))
                .await,
        );
        last_positions.push((stream.to_string(), recorded.last().map(|e| e.global_position)));
    }
    let all = page_of(StreamListing::new(100)).await;
    let expected = ["Account/B", "Account/acme/10", "Account/acme/2", "Account/z", "Account/é", "Order/1", "account/a"];
    expect_eq(CHECK, "every stream in bytewise order", &names(&all), &expected.map(String::from).to_vec());
    for summary in &all {
        let (category, id, count) = streams
            .iter()
            .find(|(c, i, _)| *c == summary.stream.category() && *i == summary.stream.id())
            .copied()
            .expect("a listed stream was appended to");
        let count = u64::try_from(count).expect("small");
        let what = format!("version and count of `{category}/{id}`");
        expect_eq(CHECK, &what, &(summary.version, summary.events), &(count, count));
        let last = last_positions.iter().find(|(name, _)| *name == summary.stream.to_string()).and_then(|(_, p)| *p);
        expect_eq(CHECK, "last position", &Some(summary.last_position), &last);
    }
    let tenant = page_of(StreamListing::new(100).with_category("Account").with_id_prefix("acme/")).await;
    expect_eq(
        CHECK,
        "filtered by type and id prefix",
        &names(&tenant),
        &vec!["Account/acme/10".to_owned(), "Account/acme/2".to_owned()],
    );
    let typed = page_of(StreamListing::new(100).with_category("account")).await;
    expect_eq(CHECK, "filtered by type (case matters)", &names(&typed), &vec!["account/a".to_owned()]);
    let mut paged = Vec::new();
    let mut listing = StreamListing::new(3);
    loop {
        let page = page_of(listing.clone()).await;
        let Some(last) = page.last() else { break };
        listing = StreamListing::new(3).after(last.stream.clone());
        let short = page.len() < 3;
        paged.extend(names(&page));
        if short {
            break;
        }
    }
    expect_eq(CHECK, "pages of three, each after the last", &paged, &names(&all));
}

/// Through a [`TenantStore`](crate::tenant::TenantStore) view,
/// `list_streams` lists the tenant's streams only, in the view's ids
/// (another tenant's and the store's own streams never show), filtered by
/// type and id prefix and paged as the store's own listing (ADR 0052).
pub async fn tenant_views_list_their_streams<S: EventStore>(store: S) {
    use crate::tenant::TenantStore;
    const CHECK: &str = "event_store::tenant_views_list_their_streams";
    async fn append(store: &dyn EventStore, category: &str, id: &str, count: usize) {
        let stream = StreamId::new(category, id).expect("a valid stream id");
        let appended = store.append(&stream, ExpectedVersion::NoStream, batch("Happened", 1, count));
        ok(CHECK, "append", within(CHECK, "append", appended).await);
    }
    async fn page_of(store: &dyn EventStore, listing: StreamListing) -> Vec<StreamSummary> {
        ok(CHECK, "list_streams", within(CHECK, "list_streams", store.list_streams(&listing)).await)
    }
    let shared = Arc::new(store);
    let view = |tenant: &str| ok(CHECK, "a tenant view", TenantStore::new(Arc::clone(&shared), tenant));
    let (acme, acme2) = (view("acme"), view("acme2"));
    append(&acme, "Account", "1", 2).await;
    append(&acme, "Account", "10", 1).await;
    append(&acme, "Account", "2", 1).await;
    append(&acme, "Order", "1", 3).await;
    append(&acme2, "Account", "1", 1).await;
    append(&acme2, "Account", "3", 1).await;
    append(&*shared, "Account", "acme", 1).await;
    append(&*shared, "Account", "9", 1).await;
    let all = page_of(&acme, StreamListing::new(100)).await;
    let expected = ["Account/1", "Account/10", "Account/2", "Order/1"].map(String::from).to_vec();
    expect_eq(CHECK, "the tenant's streams, in the view's ids", &names(&all), &expected);
    let counts: Vec<(u64, u64)> = all.iter().map(|summary| (summary.version, summary.events)).collect();
    expect_eq(CHECK, "versions and counts", &counts, &vec![(2, 2), (1, 1), (1, 1), (3, 3)]);
    let theirs = page_of(&acme2, StreamListing::new(100)).await;
    expect_eq(CHECK, "another tenant's", &names(&theirs), &vec!["Account/1".to_owned(), "Account/3".to_owned()]);
    let filtered = page_of(&acme, StreamListing::new(100).with_category("Account").with_id_prefix("1")).await;
    expect_eq(
        CHECK,
        "by type and id prefix",
        &names(&filtered),
        &vec!["Account/1".to_owned(), "Account/10".to_owned()],
    );
    let mut paged = Vec::new();
    let mut listing = StreamListing::new(3);
    loop {
        let page = page_of(&acme, listing.clone()).await;
        let Some(last) = page.last() else { break };
        listing = StreamListing::new(3).after(last.stream.clone());
        let short = page.len() < 3;
        paged.extend(names(&page));
        if short {
            break;
        }
    }
    expect_eq(CHECK, "pages of three, each after the last", &paged, &expected);
}
