//! Validates `#[aggregate]`'s arguments and item.

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::Type;

use super::attr::AggregateArgs;
use crate::common;
use crate::ctxt::Ctxt;

pub(crate) struct Model {
    pub(crate) krate: TokenStream,
    /// The item, re-emitted as is.
    pub(crate) item: TokenStream,
    /// `None` for a union, which cannot be an aggregate.
    pub(crate) ident: Option<syn::Ident>,
    pub(crate) generics: syn::Generics,
    pub(crate) event: Option<Type>,
    pub(crate) error: Option<Type>,
    pub(crate) id: TokenStream,
    pub(crate) name: String,
    /// The snapshot interval and the span of its key.
    pub(crate) snapshot_every: Option<(Span, u64)>,
    pub(crate) snapshot_version: u32,
}

pub(crate) fn parse(cx: &mut Ctxt, args: TokenStream, item: syn::Item) -> Model {
    let mut args = AggregateArgs::parse(cx, args);
    let krate = common::krate(args.krate.take().map(|(_, path)| path));
    let (ident, generics) = match &item {
        syn::Item::Struct(item) => (Some(item.ident.clone()), item.generics.clone()),
        syn::Item::Enum(item) => (Some(item.ident.clone()), item.generics.clone()),
        syn::Item::Union(union) => {
            cx.error_spanned_by(
                union.union_token,
                "`#[aggregate]` cannot be used on a union: its state must be readable safely; use a struct or an enum",
            );
            (None, union.generics.clone())
        }
        other => {
            cx.error_spanned_by(other, "`#[aggregate]` applies to a struct or an enum holding the aggregate's state");
            (None, syn::Generics::default())
        }
    };
    let event = args.event.take().map(|(_, ty)| ty);
    if event.is_none() {
        cx.error_at(
            Span::call_site(),
            "missing `event = ...`: add `event = YourEvent` with the event type this aggregate applies",
        );
    }
    let error = args.error.take().map(|(_, ty)| ty);
    if error.is_none() {
        cx.error_at(
            Span::call_site(),
            "missing `error = ...`: add `error = YourError` with the error type its command handlers return",
        );
    }
    let id = args.id.take().map_or_else(|| quote!(#krate::__private::Uuid), |(_, ty)| ty.into_token_stream());
    let name = match (args.name.take(), &ident) {
        (Some((_, lit)), _) => common::check_name(cx, &lit, "an aggregate"),
        (None, Some(ident)) => ident.to_string(),
        (None, None) => String::new(),
    };
    let snapshot_every = args.snapshot_every.take().and_then(|(span, lit)| {
        common::positive::<u64>(
            cx,
            &lit,
            "snapshot_every",
            "it counts events between snapshots; remove it to never take snapshots",
        )
        .map(|n| (span, n))
    });
    let snapshot_version = args
        .snapshot_version
        .take()
        .and_then(|(_, lit)| {
            common::positive::<u32>(cx, &lit, "snapshot_version", "the first snapshot schema is `snapshot_version = 1`")
        })
        .unwrap_or(1);
    Model {
        krate,
        item: item.into_token_stream(),
        ident,
        generics,
        event,
        error,
        id,
        name,
        snapshot_every,
        snapshot_version,
    }
}
