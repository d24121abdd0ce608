# Build: docker build -t tollgate .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /tollgate ./cmd/tollgate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /tollgate /usr/bin/tollgate
COPY Caddyfile.example /etc/tollgate/Caddyfile
ENV TOLLGATE_ADMIN=localhost:2019
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tollgate"]
CMD ["run", "--config", "/etc/tollgate/Caddyfile", "--adapter", "caddyfile"]
