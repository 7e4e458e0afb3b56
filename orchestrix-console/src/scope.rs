//! Where a page is: the console's mount point, and the view it shows (the
//! whole store, or one tenant's [`TenantStore`] view).

use std::sync::Arc;

use axum::extract::{FromRequestParts, OriginalUri, RawPathParams, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use orchestrix::store::{DeadLetterStore, EventStore};
use orchestrix::tenant::TenantStore;

use crate::config::Shared;
use crate::layout;
use crate::render::encode_component;

/// Where the console is mounted and which view a request is in.
#[derive(Debug, Clone)]
pub(crate) struct Mount {
    /// The console's root path without a trailing `/` (`/orchestrix`, or
    /// empty when it is served at `/`): where its assets are.
    pub(crate) root: String,
    /// The root of the current view's pages (`/orchestrix/t/acme`).
    pub(crate) home: String,
    /// The tenant whose view this is.
    pub(crate) tenant: Option<String>,
}

impl Mount {
    async fn of(parts: &mut Parts) -> Self {
        let original = parts.extensions.get::<OriginalUri>().map_or_else(|| parts.uri.path(), |uri| uri.0.path());
        let inner = parts.uri.path();
        let root = match original.strip_suffix(inner) {
            Some(root) => root,
            None if inner == "/" => original,
            None => "",
        }
        .trim_end_matches('/')
        .to_owned();
        let tenant = match RawPathParams::from_request_parts(parts, &()).await {
            Ok(params) => params.iter().find(|(name, _)| *name == "tenant").map(|(_, value)| value.to_owned()),
            Err(_) => None,
        };
        // The routes of a tenant's view are `/t/{tenant}/...` of the
        // console's own router: the mount point is what precedes them.
        let home = match &tenant {
            Some(tenant) => format!("{root}/t/{}", encode_component(tenant)),
            None => root.clone(),
        };
        Self { root, home, tenant }
    }

    /// The link to `path` (starting with `/`) in the current view. The
    /// view's first page is its root without a trailing `/`
    /// (`/orchestrix`), as a router nested with axum 0.8 answers it.
    pub(crate) fn href(&self, path: &str) -> String {
        join(&self.home, path)
    }

    /// The link to the console's first page.
    pub(crate) fn root_href(&self) -> String {
        join(&self.root, "/")
    }

    /// The link to `path` in `tenant`'s view.
    pub(crate) fn tenant_href(&self, tenant: &str, path: &str) -> String {
        join(&format!("{}/t/{}", self.root, encode_component(tenant)), path)
    }
}

/// `base` (without a trailing `/`) and `path` (starting with `/`).
fn join(base: &str, path: &str) -> String {
    match (base, path) {
        ("", path) => path.to_owned(),
        (base, "/") => base.to_owned(),
        (base, path) => format!("{base}{path}"),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Mount {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(parts).await)
    }
}

/// The view a page shows: the stores as its tenant sees them.
pub(crate) struct Scope {
    pub(crate) shared: Arc<Shared>,
    pub(crate) mount: Mount,
    pub(crate) events: Arc<dyn EventStore>,
    pub(crate) dead_letters: Option<Arc<dyn DeadLetterStore>>,
}

impl Scope {
    /// The projections shown in this view.
    pub(crate) fn projections(&self) -> impl Iterator<Item = &crate::config::ProjectionEntry> {
        self.shared.console.projections.iter().filter(|entry| entry.tenant == self.mount.tenant)
    }
}

impl FromRequestParts<Arc<Shared>> for Scope {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, Self::Rejection> {
        let State(shared) =
            State::<Arc<Shared>>::from_request_parts(parts, shared).await.map_err(IntoResponse::into_response)?;
        let mount = Mount::of(parts).await;
        let console = &shared.console;
        let (events, dead_letters) = match &mount.tenant {
            // Fail closed: a console with tenants has no view of the whole store.
            None if !console.tenants.is_empty() => {
                return Err((StatusCode::NOT_FOUND, layout::bare("Not found", "Choose a tenant.")).into_response());
            }
            None => (console.events.clone(), console.dead_letters.clone()),
            Some(tenant) => {
                if !console.tenants.iter().any(|known| known.as_str() == tenant) {
                    return Err((StatusCode::NOT_FOUND, layout::bare("Not found", "No such tenant.")).into_response());
                }
                let view = TenantStore::new(console.events.clone(), tenant.as_str()).map_err(|_| {
                    (StatusCode::NOT_FOUND, layout::bare("Not found", "No such tenant.")).into_response()
                })?;
                let events: Arc<dyn EventStore> = Arc::new(view);
                let dead_letters = match &console.dead_letters {
                    Some(store) => match TenantStore::new(store.clone(), tenant.as_str()) {
                        Ok(view) => Some(Arc::new(view) as Arc<dyn DeadLetterStore>),
                        Err(_) => None,
                    },
                    None => None,
                };
                (events, dead_letters)
            }
        };
        Ok(Self { shared, mount, events, dead_letters })
    }
}

/// `GET /` of a console with tenants: the tenants to choose from.
pub(crate) async fn tenant_chooser(State(shared): State<Arc<Shared>>, mount: Mount) -> Markup {
    let body = html! {
        h1 { "Tenants" }
        p { "Every page shows one tenant's view: its streams, events and dead letters only." }
        ul.tenants {
            @for tenant in &shared.console.tenants {
                li { a href=(mount.tenant_href(tenant.as_str(), "/")) { (tenant.as_str()) } }
            }
        }
    };
    layout::page(&shared, &mount, &axum::http::HeaderMap::new(), "Tenants", &body)
}
