//! `#[projection]`: an impl block whose methods handle typed events becomes
//! a `Projection`. Parse the arguments and the item, validate, expand.

mod attr;
mod expand;
mod model;

use proc_macro2::TokenStream;

pub(crate) fn projection(args: TokenStream, input: TokenStream) -> TokenStream {
    crate::ctxt::run(args, input, model::parse, expand::expand, expand::fallback)
}

#[cfg(test)]
mod tests;
