//! The error collector: every macro reports all its errors at once.

use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;

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
