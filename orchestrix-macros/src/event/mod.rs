//! `#[event]`: parse the arguments and the item, validate, expand.

mod attr;
mod expand;
mod model;
mod personal;

use proc_macro2::TokenStream;

use crate::ctxt::Ctxt;

pub(crate) fn event(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: syn::Item = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(error) => return crate::with_input(&error, input),
    };
    let mut cx = Ctxt::new();
    let model = model::parse(&mut cx, args, item);
    match cx.check() {
        Ok(()) => expand::expand(&model),
        Err(error) => {
            let mut tokens = error.to_compile_error();
            tokens.extend(expand::fallback(&model));
            tokens
        }
    }
}

#[cfg(test)]
mod tests;
