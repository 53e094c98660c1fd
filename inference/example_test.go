package inference_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"

	"github.com/medfed/medfed/inference"
	"github.com/medfed/medfed/model"
)

// Publish a model and ask for a prediction over REST, as any Open Inference Protocol client
// would.
func Example() {
	reg, _ := inference.NewRegistry(inference.DefaultConfig(), nil)
	defer reg.Close(context.Background())
	spec, _ := model.Architecture("mlp", []int{2}, 2)
	m, _ := model.Build(spec, 1)
	reg.Publish("demo", 1, m, inference.ModelMeta{})

	tokens, _ := inference.NewTokenSet(map[string]string{"a-long-operator-token": "clinic"})
	hs := httptest.NewServer(inference.NewServer(reg, tokens, nil).Handler())
	defer hs.Close()

	req := httptest.NewRequest("POST", hs.URL+"/v2/models/demo/infer",
		strings.NewReader(`{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[0.5,-1]}],"outputs":[{"name":"predicted_class"}]}`))
	req.RequestURI = ""
	req.Header.Set("Authorization", "Bearer a-long-operator-token")
	resp, err := hs.Client().Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, strings.Contains(string(body), `"name":"predicted_class","datatype":"INT64","shape":[1]`))
	// Output: 200 true
}
