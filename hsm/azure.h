/*
 * azure.h: the Azure Key Vault and Managed HSM backend ("backend = azure").
 * docs/azure.md describes its options; az.h maps its files.
 */
#ifndef KB_AZURE_H
#define KB_AZURE_H

#include "backend.h"

extern const kb_backend_ops kb_azure_backend;

#endif
