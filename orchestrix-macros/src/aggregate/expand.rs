//! Generates the `Aggregate` impl and the `CommandSet` impl.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use super::model::Model;

pub(crate) fn expand(model: &Model) -> TokenStream {
    let item = &model.item;
    let Some(imp) = aggregate_impl(model, true) else { return item.clone() };
    quote! {
        #item
        const _: () = { #imp };
    }
}

/// The item plus, when the event and error types are known, an impl
/// without the forwarding and snapshot checks, so the only errors the user
/// sees are the ones reported.
pub(crate) fn fallback(model: &Model) -> TokenStream {
    let item = &model.item;
    match aggregate_impl(model, false) {
        Some(imp) => quote! {
            #item
            const _: () = { #imp };
        },
        None => item.clone(),
    }
}

fn aggregate_impl(model: &Model, full: bool) -> Option<TokenStream> {
    let Model { krate, ident, generics, event, error, id, name, snapshot_every, snapshot_version, .. } = model;
    let (ident, event, error) = (ident.as_ref()?, event.as_ref()?, error.as_ref()?);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let every = snapshot_every
        .map_or_else(|| quote!(::core::option::Option::None), |(_, n)| quote!(::core::num::NonZeroU64::new(#n)));
    let raw = quote!(#krate::__private::serde_json::value::RawValue);
    let json_error = quote!(#krate::__private::serde_json::Error);
    let snapshots = match snapshot_every {
        Some((span, _)) if full => {
            // Spanned at `snapshot_every`: a state without `Serialize` or
            // `Deserialize` is reported there, once per missing trait.
            let encode = quote_spanned!(*span=> snapshot_needs_serialize(self));
            let decode = quote_spanned!(*span=> snapshot_needs_deserialize(__orchestrix_state));
            quote! {
                fn snapshot_state(&self) -> ::core::option::Option<::core::result::Result<#krate::__private::Box<#raw>, #json_error>> {
                    fn snapshot_needs_serialize<State: #krate::__private::serde::Serialize>(
                        state: &State,
                    ) -> ::core::result::Result<#krate::__private::Box<#raw>, #json_error> {
                        #krate::__private::encode_raw(state)
                    }
                    ::core::option::Option::Some(#encode)
                }

                fn restore_state(__orchestrix_state: &#raw) -> ::core::option::Option<::core::result::Result<Self, #json_error>> {
                    fn snapshot_needs_deserialize<State: #krate::__private::serde::de::DeserializeOwned>(
                        state: &#raw,
                    ) -> ::core::result::Result<State, #json_error> {
                        #krate::__private::serde_json::from_str(state.get())
                    }
                    ::core::option::Option::Some(#decode)
                }
            }
        }
        _ => TokenStream::new(),
    };
    let generic = !generics.params.is_empty();
    let apply = if !full {
        quote! {
            fn apply(&mut self, __orchestrix_event: &Self::Event) {
                let _ = __orchestrix_event;
            }
        }
    } else if generic {
        // Spanned at the type's name, signature included: without an
        // inherent `apply`, the call resolves to this very trait method,
        // and the lint reports it there.
        quote_spanned! {ident.span()=>
            #[deny(unconditional_recursion)]
            #[inline]
            fn apply(&mut self, __orchestrix_event: &Self::Event) {
                <#ident #ty_generics>::apply(self, __orchestrix_event)
            }
        }
    } else {
        // `<T>::apply` is the inherent method when there is one, and this
        // trait method otherwise. `pick` tells them apart by their types:
        // the same function twice picks the method that requires
        // `T: InherentApply`, which fails with the message of
        // `apply_probe`, at the type's name, instead of recursing.
        let pick = quote_spanned! {ident.span()=>
            (&__OrchestrixPair(<#ident>::apply, <#ident as #krate::Aggregate>::apply)).inherent_apply()
        };
        quote! {
            #[inline]
            fn apply(&mut self, __orchestrix_event: &Self::Event) {
                let __orchestrix_apply: fn(&mut Self, &Self::Event) = #pick;
                __orchestrix_apply(self, __orchestrix_event)
            }
        }
    };
    let apply_probe = (full && !generic).then(|| apply_probe(krate, ident));
    let commands = command_set(krate, ident, generics);
    Some(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Aggregate for #ident #ty_generics #where_clause {
            const NAME: &'static str = #name;
            const SNAPSHOT_EVERY: ::core::option::Option<::core::num::NonZeroU64> = #every;
            const SNAPSHOT_VERSION: u32 = #snapshot_version;
            type Id = #id;
            type Event = #event;
            type Error = #error;

            #apply

            #snapshots
        }

        #apply_probe
        #commands
    })
}

/// The pieces that tell an inherent `apply` from the trait's own.
fn apply_probe(krate: &TokenStream, ident: &syn::Ident) -> TokenStream {
    let message = format!(
        "`{ident}` has no `apply` method: write `impl {ident} {{ fn apply(&mut self, event: &YourEvent) {{ .. }} }}`"
    );
    quote! {
        struct __OrchestrixPair<F, G>(F, G);

        #[diagnostic::on_unimplemented(
            message = #message,
            label = "`#[aggregate]` calls `{Self}::apply` for every event",
            note = "`apply` changes the state by one event, with a `match` over the event type"
        )]
        trait InherentApply {}

        trait FindApply<S: #krate::Aggregate> {
            fn inherent_apply(&self) -> fn(&mut S, &S::Event)
            where
                S: InherentApply;
        }

        impl<F, S: #krate::Aggregate> FindApply<S> for __OrchestrixPair<F, F> {
            fn inherent_apply(&self) -> fn(&mut S, &S::Event)
            where
                S: InherentApply,
            {
                |_, _| {}
            }
        }

        trait __OrchestrixFoundApply<F> {
            fn inherent_apply(&self) -> F;
        }

        impl<F: ::core::marker::Copy, G> __OrchestrixFoundApply<F> for &__OrchestrixPair<F, G> {
            fn inherent_apply(&self) -> F {
                self.0
            }
        }
    }
}

/// `CommandSet`: the commands of the type's `#[command_handler]` block
/// (`CommandHandlerBlock`), or none when it has no such block, so that an
/// aggregate without commands can be registered too. Method resolution
/// tells the two apart: `Probe<T>` (only when `T` has a block) is tried
/// before `&Probe<T>`.
fn command_set(krate: &TokenStream, ident: &syn::Ident, generics: &syn::Generics) -> TokenStream {
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let vec = quote!(#krate::__private::Vec<#krate::__private::CommandDescriptor>);
    if !generics.params.is_empty() {
        // Method resolution cannot decide for a generic type: it needs the block.
        let mut generics = generics.clone();
        generics
            .make_where_clause()
            .predicates
            .push(syn::parse_quote!(#ident #ty_generics: #krate::command::CommandHandlerBlock));
        let where_clause = &generics.where_clause;
        return quote! {
            #[automatically_derived]
            impl #impl_generics #krate::command::CommandSet for #ident #ty_generics #where_clause {
                fn commands() -> #vec {
                    <Self as #krate::command::CommandHandlerBlock>::commands()
                }
            }
        };
    }
    quote! {
        struct __OrchestrixProbe<T>(::core::marker::PhantomData<T>);

        trait __OrchestrixWithBlock {
            fn __orchestrix_commands(&self) -> #vec;
        }

        impl<T: #krate::command::CommandHandlerBlock> __OrchestrixWithBlock for __OrchestrixProbe<T> {
            fn __orchestrix_commands(&self) -> #vec {
                <T as #krate::command::CommandHandlerBlock>::commands()
            }
        }

        trait __OrchestrixWithoutBlock {
            fn __orchestrix_commands(&self) -> #vec;
        }

        impl<T> __OrchestrixWithoutBlock for &__OrchestrixProbe<T> {
            fn __orchestrix_commands(&self) -> #vec {
                #krate::__private::Vec::new()
            }
        }

        #[automatically_derived]
        impl #impl_generics #krate::command::CommandSet for #ident #ty_generics #where_clause {
            fn commands() -> #vec {
                (&__OrchestrixProbe::<Self>(::core::marker::PhantomData)).__orchestrix_commands()
            }
        }
    }
}
