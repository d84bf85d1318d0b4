-- Certificate credentials: a Graph credential proves itself to Microsoft with a client
-- secret (as before) or with a certificate whose key pair Portico generated and whose
-- private key it keeps sealed. A certificate credential has no client secret, so the
-- secret's columns become optional.
ALTER TABLE graph_credentials ADD COLUMN auth_method TEXT NOT NULL DEFAULT 'client_secret'
    CHECK (auth_method IN ('client_secret', 'certificate'));
ALTER TABLE graph_credentials ALTER COLUMN client_secret_sealed DROP NOT NULL;
ALTER TABLE graph_credentials ALTER COLUMN secret_expires_on DROP NOT NULL;
ALTER TABLE graph_credentials ALTER COLUMN secret_replaced_at DROP NOT NULL;
ALTER TABLE graph_credentials ADD CONSTRAINT graph_credentials_secret_of_secret_credentials
    CHECK (auth_method = 'certificate'
        OR (client_secret_sealed IS NOT NULL AND secret_expires_on IS NOT NULL
            AND secret_replaced_at IS NOT NULL));

-- A certificate credential's certificates: the `current` one signs Portico's client
-- assertions; a `next` one, made by "Renew certificate", waits until the admin has uploaded
-- it to Azure and switches. The certificate is public; its private key is sealed.
CREATE TABLE graph_credential_certificates (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    credential_id       TEXT NOT NULL REFERENCES graph_credentials (id) ON DELETE CASCADE,
    slot                TEXT NOT NULL CHECK (slot IN ('current', 'next')),
    private_key_sealed  TEXT NOT NULL,
    certificate_pem     TEXT NOT NULL,
    -- SHA-1 of the certificate in hex capitals: the Thumbprint the Azure portal lists.
    thumbprint          TEXT NOT NULL,
    not_before          BIGINT NOT NULL,
    not_after           BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    UNIQUE (credential_id, slot)
);
CREATE INDEX graph_credential_certificates_by_expiry
    ON graph_credential_certificates (tenant_id, not_after);
