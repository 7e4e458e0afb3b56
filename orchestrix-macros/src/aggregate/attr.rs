//! The arguments of `#[aggregate(...)]`.

use proc_macro2::TokenStream;
use syn::parse::{ParseStream, Parser};
use syn::{LitInt, LitStr, Token, Type};

use crate::common::{self, Slot};
use crate::ctxt::Ctxt;

/// The keyword table: every key `#[aggregate]` knows.
pub(crate) mod kw {
    syn::custom_keyword!(event);
    syn::custom_keyword!(error);
    syn::custom_keyword!(id);
    syn::custom_keyword!(name);
    syn::custom_keyword!(snapshot_every);
    syn::custom_keyword!(snapshot_version);
}

pub(crate) const VALID_KEYS: &[&str] = &["event", "error", "id", "name", "snapshot_every", "snapshot_version", "crate"];

pub(crate) struct AggregateArgs {
    pub(crate) event: Slot<Type>,
    pub(crate) error: Slot<Type>,
    pub(crate) id: Slot<Type>,
    pub(crate) name: Slot<LitStr>,
    pub(crate) snapshot_every: Slot<LitInt>,
    pub(crate) snapshot_version: Slot<LitInt>,
    pub(crate) krate: Slot<syn::Path>,
}

impl AggregateArgs {
    pub(crate) fn parse(cx: &mut Ctxt, tokens: TokenStream) -> Self {
        let mut args = Self {
            event: Slot::new("event"),
            error: Slot::new("error"),
            id: Slot::new("id"),
            name: Slot::new("name"),
            snapshot_every: Slot::new("snapshot_every"),
            snapshot_version: Slot::new("snapshot_version"),
            krate: Slot::new("crate"),
        };
        let parser = |input: ParseStream<'_>| common::parse_pairs(input, |input| args.parse_pair(cx, input));
        if let Err(error) = parser.parse2(tokens) {
            cx.push(error);
        }
        args
    }

    fn parse_pair(&mut self, cx: &mut Ctxt, input: ParseStream<'_>) -> syn::Result<()> {
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::event) {
            let key: kw::event = input.parse()?;
            self.event.set(cx, key.span, common::value(input)?);
        } else if lookahead.peek(kw::error) {
            let key: kw::error = input.parse()?;
            self.error.set(cx, key.span, common::value(input)?);
        } else if lookahead.peek(kw::id) {
            let key: kw::id = input.parse()?;
            self.id.set(cx, key.span, common::value(input)?);
        } else if lookahead.peek(kw::name) {
            let key: kw::name = input.parse()?;
            self.name.set(cx, key.span, common::value(input)?);
        } else if lookahead.peek(kw::snapshot_every) {
            let key: kw::snapshot_every = input.parse()?;
            self.snapshot_every.set(cx, key.span, common::value(input)?);
        } else if lookahead.peek(kw::snapshot_version) {
            let key: kw::snapshot_version = input.parse()?;
            self.snapshot_version.set(cx, key.span, common::value(input)?);
        } else if lookahead.peek(Token![crate]) {
            let key: Token![crate] = input.parse()?;
            self.krate.set(cx, key.span, common::crate_path(input)?);
        } else {
            return common::unknown_key(cx, input, VALID_KEYS, lookahead.error());
        }
        Ok(())
    }
}
