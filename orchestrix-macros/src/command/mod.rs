//! `#[command_handler]`: parse the arguments and the item, validate, expand.

mod attr;
mod expand;
mod model;

use proc_macro2::TokenStream;

pub(crate) fn command_handler(args: TokenStream, input: TokenStream) -> TokenStream {
    // Invalid handlers get stub impls in the model, so the expansion
    // doubles as the fallback: the item plus an impl per command.
    crate::ctxt::run(args, input, model::parse, expand::expand, expand::expand)
}

#[cfg(test)]
mod tests;
