//! The error collector, and the driver every macro runs through: parse
//! the item, validate it into a model while collecting errors, expand.

use std::fmt::Display;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;

/// Runs one macro: parses `input` as an item, builds the model with
/// `parse` (which records every error in a [`Ctxt`]), then emits `expand`
/// of the model, or, when there were errors, the errors followed by
/// `fallback` of the model (the item plus stub impls, so that one mistake
/// yields one error).
///
/// Input that is not an item at all is reported and re-emitted as is.
pub(crate) fn run<M>(
    args: TokenStream,
    input: TokenStream,
    parse: impl FnOnce(&mut Ctxt, TokenStream, syn::Item) -> M,
    expand: impl FnOnce(&M) -> TokenStream,
    fallback: impl FnOnce(&M) -> TokenStream,
) -> TokenStream {
    let item: syn::Item = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(error) => {
            let mut tokens = error.to_compile_error();
            tokens.extend(input);
            return tokens;
        }
    };
    let mut cx = Ctxt::new();
    let model = parse(&mut cx, args, item);
    match cx.check() {
        Ok(()) => expand(&model),
        Err(error) => {
            let mut tokens = error.to_compile_error();
            tokens.extend(fallback(&model));
            tokens
        }
    }
}

/// Collects the errors of one macro invocation so they are reported
/// together, merged with [`syn::Error::combine`].
///
/// Dropping a context without calling [`Ctxt::check`] is a bug in the
/// macro and panics, so no error can be silently lost.
pub(crate) struct Ctxt {
    errors: Option<Vec<syn::Error>>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Self { errors: Some(Vec::new()) }
    }

    /// Records an error spanning `tokens`.
    pub(crate) fn error_spanned_by(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens.into_token_stream(), message));
    }

    /// Records an error at `span`.
    pub(crate) fn error_at(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Records an error from a parser.
    pub(crate) fn push(&mut self, error: syn::Error) {
        self.errors.as_mut().expect("the context was already checked").push(error);
    }

    /// Consumes the context: `Err` with every recorded error combined.
    pub(crate) fn check(mut self) -> Result<(), syn::Error> {
        let errors = self.errors.take().expect("the context was already checked");
        let mut errors = errors.into_iter();
        let Some(mut combined) = errors.next() else { return Ok(()) };
        for error in errors {
            combined.combine(error);
        }
        Err(combined)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        assert!(
            self.errors.is_none() || std::thread::panicking(),
            "a macro context was dropped without checking its errors"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combines_every_error() {
        let mut cx = Ctxt::new();
        cx.error_at(Span::call_site(), "first");
        cx.error_at(Span::call_site(), "second");
        let error = cx.check().unwrap_err();
        let messages: Vec<String> = error.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages, ["first", "second"]);
    }

    #[test]
    fn no_error_is_ok() {
        assert!(Ctxt::new().check().is_ok());
    }

    #[test]
    #[should_panic(expected = "without checking")]
    fn unchecked_context_panics() {
        drop(Ctxt::new());
    }
}
