// Command grpcgo_ceiling is the benchmark's transport ceiling: a minimal grpc-go server that
// speaks the scorer's two APIs (scorefleet.v1.Scorer and OIP v2 inference.GRPCInferenceService)
// and answers every scoring RPC with a constant, without running a model.
//
// Whatever RPC/s it reaches on this machine, with the same load generator and payloads, bounds
// what any scorer could reach: the gap between it and a real server is that server's per-RPC
// overhead. It unmarshals each request and marshals a realistically sized response, as a real
// server must, so the figure is "gRPC + protobuf", not "gRPC alone".
//
// The Go stubs are generated at build time (benchmarks/scorer/build_tools.py) from the scorer's own
// .proto files into gen/, so this server cannot drift from the wire contract it stands in for.
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"math"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	inferencepb "scorefleet.local/bench/grpcgo_ceiling/gen/inferencepb"
	scorerpb "scorefleet.local/bench/grpcgo_ceiling/gen/scorerpb"
)

const (
	maxRows      = 8192
	constScore   = float32(0.25)
	threshold    = float32(0.5)
	modelName    = "example"
	modelVersion = "v1"
	track        = "stable"
)

// Precomputed outputs, sliced per request: the ceiling must not pay for building them.
var (
	rawScores = func() []byte {
		b := make([]byte, 4*maxRows)
		for i := 0; i < maxRows; i++ {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(constScore))
		}
		return b
	}()
	scores = func() []float32 {
		s := make([]float32, maxRows)
		for i := range s {
			s[i] = constScore
		}
		return s
	}()
	decisions = make([]bool, maxRows)
)

type inferenceServer struct {
	inferencepb.UnimplementedGRPCInferenceServiceServer
}

func (inferenceServer) ServerLive(context.Context, *inferencepb.ServerLiveRequest) (*inferencepb.ServerLiveResponse, error) {
	return &inferencepb.ServerLiveResponse{Live: true}, nil
}

func (inferenceServer) ServerReady(context.Context, *inferencepb.ServerReadyRequest) (*inferencepb.ServerReadyResponse, error) {
	return &inferencepb.ServerReadyResponse{Ready: true}, nil
}

func (inferenceServer) ModelReady(context.Context, *inferencepb.ModelReadyRequest) (*inferencepb.ModelReadyResponse, error) {
	return &inferencepb.ModelReadyResponse{Ready: true}, nil
}

func (inferenceServer) ModelInfer(_ context.Context, req *inferencepb.ModelInferRequest) (*inferencepb.ModelInferResponse, error) {
	rows := int64(1)
	if len(req.GetInputs()) > 0 && len(req.GetInputs()[0].GetShape()) > 0 {
		rows = req.GetInputs()[0].GetShape()[0]
	}
	if rows < 1 || rows > maxRows {
		return nil, status.Errorf(codes.InvalidArgument, "rows %d not in [1, %d]", rows, maxRows)
	}
	return &inferencepb.ModelInferResponse{
		ModelName:    req.GetModelName(),
		ModelVersion: modelVersion,
		Id:           req.GetId(),
		Outputs: []*inferencepb.ModelInferResponse_InferOutputTensor{
			{Name: "score", Datatype: "FP32", Shape: []int64{rows}},
		},
		RawOutputContents: [][]byte{rawScores[:4*rows]},
	}, nil
}

type scorerServer struct {
	scorerpb.UnimplementedScorerServer
}

func (scorerServer) Score(_ context.Context, req *scorerpb.ScoreRequest) (*scorerpb.ScoreResponse, error) {
	return &scorerpb.ScoreResponse{
		EventId: req.GetEvent().GetEventId(), Score: constScore, Decision: false,
		Threshold: threshold, ModelName: modelName, ModelVersion: modelVersion, Track: track,
	}, nil
}

func (scorerServer) ScoreBatch(_ context.Context, req *scorerpb.ScoreBatchRequest) (*scorerpb.ScoreBatchResponse, error) {
	rows := len(req.GetEvents())
	if m := req.GetMatrix(); m != nil && m.GetNumFeatures() > 0 {
		rows = len(m.GetFeatures()) / int(m.GetNumFeatures())
	}
	if rows < 1 || rows > maxRows {
		return nil, status.Errorf(codes.InvalidArgument, "rows %d not in [1, %d]", rows, maxRows)
	}
	return &scorerpb.ScoreBatchResponse{
		Scores: scores[:rows], Decisions: decisions[:rows], Threshold: threshold,
		ModelName: modelName, ModelVersion: modelVersion, Track: track,
	}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (loopback only)")
	flag.Parse()
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("listen %s: %v", *addr, err)
	}
	srv := grpc.NewServer()
	inferencepb.RegisterGRPCInferenceServiceServer(srv, inferenceServer{})
	scorerpb.RegisterScorerServer(srv, scorerServer{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-stop; srv.Stop() }()
	fmt.Printf("grpcgo_ceiling listening on %s\n", lis.Addr())
	if err := srv.Serve(lis); err != nil {
		log.Fatalf("serve: %v", err)
	}
}
