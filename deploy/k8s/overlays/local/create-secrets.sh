#!/usr/bin/env bash
# Creates the Secrets the local overlay references, with random passwords and a new JWT
# signing key, in namespace ${NAMESPACE:-shop}. A Secret that already exists is kept (a MySQL
# volume remembers the password it was initialised with), so running this again is safe.
#   deploy/k8s/overlays/local/create-secrets.sh            # then: kubectl apply -k deploy/k8s/overlays/local
#   DRY_RUN=1 deploy/k8s/overlays/local/create-secrets.sh  # print the manifests, touch nothing
# Needs kubectl and openssl. Prints the admin login at the end.
set -euo pipefail

namespace="${NAMESPACE:-shop}"
dry_run="${DRY_RUN:-0}"

password() { openssl rand -hex 16; }

# KEY of an existing Secret NAME, or a new password: a Secret created later must agree with
# the ones kept (a database URL with its database's password, SERVICE_PASSWORD in two places).
existing_or_new() {
    local value=""
    if [ "$dry_run" != 1 ]; then
        value="$(kubectl --namespace "$namespace" get secret "$1" \
            -o "jsonpath={.data.$2}" 2>/dev/null | base64 -d || true)"
    fi
    if [ -n "$value" ]; then echo "$value"; else password; fi
}

apply_secret() {
    local name="$1"
    shift
    if [ "$dry_run" = 1 ]; then
        echo "---"
        kubectl create secret generic "$name" --namespace "$namespace" "$@" --dry-run=client -o yaml
        return
    fi
    if kubectl --namespace "$namespace" get secret "$name" >/dev/null 2>&1; then
        echo "secret/$name exists; kept"
        return
    fi
    kubectl create secret generic "$name" --namespace "$namespace" "$@" --dry-run=client -o yaml |
        kubectl apply -f -
}

if [ "$dry_run" != 1 ]; then
    kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f -
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$scratch/jwt-private.pem" 2>/dev/null

service_password="$(existing_or_new user-service-accounts SERVICE_PASSWORD)"
admin_password="$(existing_or_new user-service-accounts ADMIN_PASSWORD)"

for db in user:shop_users product:shop_products order:shop_orders; do
    service="${db%%:*}"
    database="${db##*:}"
    db_password="$(existing_or_new "${service}-db-secrets" MYSQL_PASSWORD)"
    apply_secret "${service}-db-secrets" \
        --from-literal=MYSQL_ROOT_PASSWORD="$(password)" \
        --from-literal=MYSQL_PASSWORD="$db_password"
    url="mysql+pymysql://shop:${db_password}@${service}-db:3306/${database}"
    case "$service" in
        user)
            apply_secret user-service-secrets --from-literal=USER_DATABASE_URL="$url"
            # Mounted as a file in the pods and the Job; the accounts go to the Job only.
            apply_secret user-service-signing-key \
                --from-file=jwt-private.pem="$scratch/jwt-private.pem"
            apply_secret user-service-accounts \
                --from-literal=ADMIN_USERNAME=admin \
                --from-literal=ADMIN_PASSWORD="$admin_password" \
                --from-literal=SERVICE_USERNAME=order-service \
                --from-literal=SERVICE_PASSWORD="$service_password"
            ;;
        product)
            apply_secret product-service-secrets --from-literal=PRODUCT_DATABASE_URL="$url"
            ;;
        order)
            apply_secret order-service-secrets \
                --from-literal=ORDER_DATABASE_URL="$url" \
                --from-literal=SERVICE_USERNAME=order-service \
                --from-literal=SERVICE_PASSWORD="$service_password"
            ;;
    esac
done

if [ "$dry_run" != 1 ]; then
    echo "admin login: admin / $admin_password"
fi
