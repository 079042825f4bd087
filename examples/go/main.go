// Command identity-example is a Go service calling the identity service over gRPC, with code
// generated from proto/ by buf (see README.md).
//
// Usage: identity-example [--grpc HOST:PORT] [--http URL] [--sim URL] [--api-key KEY] ...
// Each flag also reads an environment variable (IDENTITY_GRPC, IDENTITY_HTTP, IDENTITY_SIM,
// IDENTITY_API_KEY, ...); the defaults are `npm start`'s. Prints one JSON line and exits 1 when a
// step failed.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	identityv1 "github.com/identityservice/identity/examples/go/gen/identity/v1"
)

func env(name, fallback string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return fallback
}

var (
	grpcAddr = flag.String("grpc", env("IDENTITY_GRPC", "localhost:9090"), "the h2c listener")
	httpBase = flag.String("http", env("IDENTITY_HTTP", "http://localhost:8080"), "the HTTP/1.1 listener")
	simBase  = flag.String("sim", env("IDENTITY_SIM", "http://localhost:8090"), "the WeChat simulator")
	apiKey   = flag.String("api-key", env("IDENTITY_API_KEY", ""), "an internal caller's key")
	appKey   = flag.String("app", env("IDENTITY_APP", "demo"), "the configured app key (the token's aud)")
	appid    = flag.String("appid", env("IDENTITY_APPID", "wx0000000000000001"), "its WeChat appid")
	issuer   = flag.String("issuer", env("IDENTITY_ISSUER", "identity"), "the configured issuer")
	jwksURL  = flag.String("jwks", env("IDENTITY_JWKS", ""), "default: {http}/.well-known/jwks.json")
)

const timeout = 10 * time.Second

var web = &http.Client{Timeout: timeout}

// result is one step's line in the summary: "ok" is true, false, or nil for a skipped step.
type result = map[string]any

// step runs fn, turning its error into a failed step so that every failure reaches the summary.
func step(fn func() (result, error)) result {
	r, err := fn()
	if err != nil {
		return result{"ok": false, "error": err.Error()}
	}
	return r
}

func main() {
	flag.Parse()
	var summary struct {
		Login            result `json:"login"`
		CheckLoginBearer result `json:"checkLoginBearer,omitempty"`
		CheckLoginAPIKey result `json:"checkLoginApiKey,omitempty"`
		Refused          result `json:"refused,omitempty"`
		JWKS             result `json:"jwks,omitempty"`
	}
	defer func() {
		line, _ := json.Marshal(summary)
		fmt.Println(string(line))
		for _, r := range []result{summary.Login, summary.CheckLoginBearer, summary.CheckLoginAPIKey, summary.Refused, summary.JWKS} {
			if r["ok"] == false {
				os.Exit(1)
			}
		}
	}()

	conn, err := grpc.NewClient(*grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		summary.Login = result{"ok": false, "error": err.Error()}
		return
	}
	defer conn.Close()
	stub := identityv1.NewIdentityServiceClient(conn)

	// 1. Login with a code from the simulator (in production the mini-program sends its wx.login code).
	var token string
	summary.Login = step(func() (result, error) {
		var minted struct{ Code string }
		if err := httpJSON(http.MethodPost, *simBase+"/sim/login-code", map[string]string{"appid": *appid}, &minted); err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		res, err := stub.Login(ctx, &identityv1.LoginRequest{AppId: *appKey, Credential: &identityv1.LoginRequest_Code{Code: minted.Code}})
		if err != nil {
			return nil, err
		}
		token = res.GetTokens().GetAccessToken()
		return result{"ok": true, "userId": res.GetUser().GetId(), "registered": res.GetRegistered(), "firstLogin": res.GetFirstLogin(), "expiresIn": res.GetTokens().GetExpiresIn()}, nil
	})
	if token == "" {
		return // nothing below can run without a token
	}

	checkLogin := func(key, value string, req *identityv1.CheckLoginRequest) func() (result, error) {
		return func() (result, error) {
			ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), key, value), timeout)
			defer cancel()
			res, err := stub.CheckLogin(ctx, req)
			if err != nil {
				return nil, err
			}
			return result{"ok": true, "userId": res.GetUser().GetId(), "appId": res.GetAppId(), "sessionId": res.GetSessionId(), "expireTime": res.GetExpireTime().AsTime().Format(time.RFC3339Nano)}, nil
		}
	}

	// 2. CheckLogin as the end user: the token as bearer.
	summary.CheckLoginBearer = step(checkLogin("authorization", "Bearer "+token, &identityv1.CheckLoginRequest{}))

	// 3. CheckLogin as an internal service: its API key, the user's token in the request.
	if *apiKey != "" {
		summary.CheckLoginAPIKey = step(checkLogin("x-api-key", *apiKey, &identityv1.CheckLoginRequest{AccessToken: token}))
	} else {
		summary.CheckLoginAPIKey = result{"ok": nil, "skipped": "no --api-key / IDENTITY_API_KEY"}
	}

	// 4. A refused call: branch on the gRPC code and the ErrorInfo reason only, never on the message.
	summary.Refused = step(func() (result, error) {
		_, err := checkLogin("authorization", "Bearer not-a-token", &identityv1.CheckLoginRequest{})()
		if err == nil {
			return nil, errors.New("CheckLogin accepted a bad token")
		}
		return reasonOf(err), nil
	})

	// 5. Verify the access token locally with the service's public keys (no call per request).
	summary.JWKS = step(func() (result, error) { return verify(token) })
}

// reasonOf reads the gRPC code and the google.rpc.ErrorInfo detail of a refused call.
func reasonOf(err error) result {
	st := status.Convert(err)
	// code.Code names it as the proto does (UNAUTHENTICATED); no details when the call never reached the service.
	r := result{"ok": true, "code": code.Code(st.Code()).String(), "reason": nil}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			r["reason"], r["domain"] = info.GetReason(), info.GetDomain()
			break
		}
	}
	return r
}

// verify checks the token's signature against the JWKS, and its iss, aud (the app key) and exp.
func verify(token string) (result, error) {
	url := *jwksURL
	if url == "" {
		url = *httpBase + "/.well-known/jwks.json"
	}
	var set jose.JSONWebKeySet
	if err := httpJSON(http.MethodGet, url, nil, &set); err != nil {
		return nil, err
	}
	// Accept only the algorithms the service signs with (each key names its own), never "none" or HMAC.
	var algs []jose.SignatureAlgorithm
	for _, k := range set.Keys {
		if alg := jose.SignatureAlgorithm(k.Algorithm); alg == jose.ES256 || alg == jose.EdDSA {
			algs = append(algs, alg)
		}
	}
	tok, err := jwt.ParseSigned(token, algs)
	if err != nil {
		return nil, err
	}
	header := tok.Headers[0] // ParseSigned accepts compact tokens only: exactly one signature
	keys := set.Key(header.KeyID)
	if len(keys) == 0 || keys[0].Algorithm != header.Algorithm {
		return nil, fmt.Errorf("no %s key %q in the JWKS", header.Algorithm, header.KeyID)
	}
	var claims jwt.Claims
	var raw map[string]any
	if err := tok.Claims(keys[0].Key, &claims, &raw); err != nil {
		return nil, err
	}
	if claims.Expiry == nil || claims.Subject == "" {
		return nil, errors.New("the token has no exp or no sub")
	}
	if err := claims.Validate(jwt.Expected{Issuer: *issuer, AnyAudience: jwt.Audience{*appKey}, Time: time.Now()}); err != nil {
		return nil, err
	}
	return result{"ok": true, "kid": header.KeyID, "sub": claims.Subject, "aud": raw["aud"], "iss": claims.Issuer, "exp": claims.Expiry.Time().Unix()}, nil
}

// httpJSON sends body (when not nil) as JSON and decodes a 200 answer into out.
func httpJSON(method, url string, body, out any) error {
	var payload bytes.Buffer
	if body != nil {
		if err := json.NewEncoder(&payload).Encode(body); err != nil {
			return err
		}
	}
	req, err := http.NewRequest(method, url, &payload)
	if err != nil {
		return err
	}
	req.Header.Set("content-type", "application/json")
	res, err := web.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", method, url, res.Status)
	}
	return json.NewDecoder(res.Body).Decode(out)
}
