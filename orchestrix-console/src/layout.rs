//! The frame of every page: the head, the navigation, the tenant switch
//! and the sign-in form; and the vendored assets.

use axum::http::header::{self, HeaderMap};
use axum::response::IntoResponse;
use maud::{html, Markup, DOCTYPE};

use crate::config::Shared;
use crate::scope::Mount;
use crate::security::signed_in_csrf;

const STYLESHEET: &str = include_str!("../assets/console.css");
const SCRIPT: &str = include_str!("../assets/console.js");

/// `GET /assets/console.css`.
pub(crate) async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLESHEET)
}

/// `GET /assets/console.js`.
pub(crate) async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT)
}

fn head(root: &str, title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Orchestrix console" }
            link rel="stylesheet" href=(format!("{root}/assets/console.css"));
            script src=(format!("{root}/assets/console.js")) defer {}
        }
    }
}

/// A page of the console: `body` in the frame.
pub(crate) fn page(shared: &Shared, mount: &Mount, headers: &HeaderMap, title: &str, body: &Markup) -> Markup {
    let csrf = signed_in_csrf(shared, headers);
    let tenants = &shared.console.tenants;
    let in_view = mount.tenant.is_some() || tenants.is_empty();
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(&mount.root, title))
            body {
                header.top {
                    a.brand href=(mount.root_href()) { "Orchestrix" }
                    @if in_view {
                        nav {
                            a href=(mount.href("/")) { "Streams" }
                            a href=(mount.href("/tail")) { "Tail" }
                            a href=(mount.href("/dead-letters")) { "Dead letters" }
                            a href=(mount.href("/projections")) { "Projections" }
                            a href=(mount.href("/sagas")) { "Sagas" }
                        }
                    }
                    @if !tenants.is_empty() {
                        details.tenant-switch {
                            summary {
                                "Tenant: "
                                strong id="current-tenant" { (mount.tenant.as_deref().unwrap_or("none")) }
                            }
                            ul {
                                @for tenant in tenants {
                                    li { a href=(mount.tenant_href(tenant.as_str(), "/")) { (tenant.as_str()) } }
                                }
                            }
                        }
                    }
                    @if shared.writable() {
                        @match &csrf {
                            Some(csrf) => {
                                form.session method="post" action=(format!("{}/session/end", mount.root)) {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button type="submit" { "Sign out" }
                                }
                            }
                            None => {
                                form.session id="sign-in" method="post" action=(format!("{}/session", mount.root)) {
                                    input type="hidden" name="next" value=(mount.href("/dead-letters"));
                                    input type="password" name="token" placeholder="write token" autocomplete="off" aria-label="write token";
                                    button type="submit" { "Sign in" }
                                }
                            }
                        }
                    } @else {
                        span.badge title="No write token is configured: nothing can be changed from here." { "read-only" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page without the navigation: refusals and errors. `message` is a
/// fixed text or an escaped one.
pub(crate) fn bare(title: &str, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Orchestrix console" }
            }
            body { main { h1 { (title) } p.message { (message) } } }
        }
    }
}
