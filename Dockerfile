# syntax=docker/dockerfile:1
# Build: a static binary; run: distroless nonroot (uid 65532), nothing else in the image.
FROM golang:1.26 AS build
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY pkg/ pkg/
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/regcred-webhook ./cmd/regcred-webhook

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/regcred-webhook /regcred-webhook
USER 65532:65532
ENTRYPOINT ["/regcred-webhook"]
