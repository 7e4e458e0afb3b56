//! The arguments of `#[command_handler(...)]` and of the method helper
//! attribute `#[command(requires = ...)]`.

use proc_macro2::{Span, TokenStream};
use syn::parse::{ParseStream, Parser};
use syn::Token;

use crate::common::{self, Slot};
use crate::ctxt::Ctxt;

/// The keyword table: every key and value the two attributes know.
pub(crate) mod kw {
    syn::custom_keyword!(requires);
    syn::custom_keyword!(new);
    syn::custom_keyword!(existing);
    syn::custom_keyword!(any);
}

pub(crate) const HANDLER_KEYS: &[&str] = &["crate"];
pub(crate) const COMMAND_KEYS: &[&str] = &["requires"];

/// Whether the aggregate must exist, as `Existence`'s variant name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Requires {
    New,
    Existing,
    Any,
}

/// Parses `#[command_handler(crate = "...")]`.
pub(crate) fn parse_handler_args(cx: &mut Ctxt, tokens: TokenStream) -> Option<syn::Path> {
    let mut krate = Slot::new("crate");
    let parser = |input: ParseStream<'_>| {
        common::parse_pairs(input, |input| {
            let lookahead = input.lookahead1();
            if lookahead.peek(Token![crate]) {
                let key: Token![crate] = input.parse()?;
                krate.set(cx, key.span, common::crate_path(input)?);
                Ok(())
            } else {
                common::unknown_key(cx, input, HANDLER_KEYS, lookahead.error())
            }
        })
    };
    if let Err(error) = parser.parse2(tokens) {
        cx.push(error);
    }
    krate.take().map(|(_, path)| path)
}

/// Parses `#[command(requires = new | existing | any)]`.
pub(crate) fn parse_command_args(cx: &mut Ctxt, tokens: TokenStream) -> Option<(Span, Requires)> {
    let mut requires = Slot::new("requires");
    let parser = |input: ParseStream<'_>| {
        common::parse_pairs(input, |input| {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::requires) {
                let key: kw::requires = input.parse()?;
                input.parse::<Token![=]>()?;
                let lookahead = input.lookahead1();
                let value = if lookahead.peek(kw::new) {
                    input.parse::<kw::new>()?;
                    Requires::New
                } else if lookahead.peek(kw::existing) {
                    input.parse::<kw::existing>()?;
                    Requires::Existing
                } else if lookahead.peek(kw::any) {
                    input.parse::<kw::any>()?;
                    Requires::Any
                } else {
                    let _ = lookahead;
                    return Err(
                        input.error("`requires` is `new` (the command creates the aggregate), `existing` or `any`")
                    );
                };
                requires.set(cx, key.span, value);
                Ok(())
            } else {
                common::unknown_key(cx, input, COMMAND_KEYS, lookahead.error())
            }
        })
    };
    if let Err(error) = parser.parse2(tokens) {
        cx.push(error);
    }
    requires.take()
}
