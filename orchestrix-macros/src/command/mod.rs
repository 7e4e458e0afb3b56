//! `#[command_handler]`: parse the arguments and the item, validate, expand.

mod attr;
mod expand;
mod model;

use proc_macro2::TokenStream;

use crate::ctxt::Ctxt;

pub(crate) fn command_handler(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: syn::Item = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(error) => return crate::with_input(&error, input),
    };
    let mut cx = Ctxt::new();
    let model = model::parse(&mut cx, args, item);
    // Invalid handlers are left out of the model, so the expansion doubles
    // as the fallback: the item plus the impls of the valid handlers.
    let expanded = expand::expand(&model);
    match cx.check() {
        Ok(()) => expanded,
        Err(error) => {
            let mut tokens = error.to_compile_error();
            tokens.extend(expanded);
            tokens
        }
    }
}

#[cfg(test)]
mod tests;
