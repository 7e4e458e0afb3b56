//! The arguments of `#[projection(...)]`.

use proc_macro2::TokenStream;
use syn::parse::{ParseStream, Parser};
use syn::{LitStr, Token};

use crate::common::{self, Slot};
use crate::ctxt::Ctxt;

/// The keyword table: every key `#[projection]` knows.
pub(crate) mod kw {
    syn::custom_keyword!(name);
}

pub(crate) const VALID_KEYS: &[&str] = &["name", "crate"];

/// The arguments as written, each with the span of its key.
pub(crate) struct ProjectionArgs {
    pub(crate) name: Slot<LitStr>,
    pub(crate) krate: Slot<syn::Path>,
}

impl ProjectionArgs {
    /// Parses `tokens`, recording every error in `cx`.
    pub(crate) fn parse(cx: &mut Ctxt, tokens: TokenStream) -> Self {
        let mut args = Self { name: Slot::new("name"), krate: Slot::new("crate") };
        let parser = |input: ParseStream<'_>| common::parse_pairs(input, |input| args.parse_pair(cx, input));
        if let Err(error) = parser.parse2(tokens) {
            cx.push(error);
        }
        args
    }

    fn parse_pair(&mut self, cx: &mut Ctxt, input: ParseStream<'_>) -> syn::Result<()> {
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::name) {
            let key: kw::name = input.parse()?;
            self.name.set(cx, key.span, common::value(input)?);
        } else if lookahead.peek(Token![crate]) {
            let key: Token![crate] = input.parse()?;
            self.krate.set(cx, key.span, common::crate_path(input)?);
        } else {
            return common::unknown_key(cx, input, VALID_KEYS, lookahead.error());
        }
        Ok(())
    }
}
