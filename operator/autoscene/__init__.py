"""autoscene: run Actions on files uploaded to Records, as Kubernetes Jobs."""

GROUP = "autoscene.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
