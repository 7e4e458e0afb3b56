//! `#[event]`: parse the arguments and the item, validate, expand.

mod attr;
mod expand;
mod model;
mod personal;

use proc_macro2::TokenStream;

pub(crate) fn event(args: TokenStream, input: TokenStream) -> TokenStream {
    crate::ctxt::run(args, input, model::parse, expand::expand, expand::fallback)
}

#[cfg(test)]
mod tests;
