using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Deployment;

/// <summary>compose/validate.sh in CI: the production shape (compose/, k8s/, the Dockerfiles) passes the Compose
/// Specification schema, the Kubernetes schemas and the Dockerfile linters, and a copy with mistakes in it fails,
/// each mistake named, so the check itself can fail. No Docker engine or cluster: see compose/README.md, "Validation".</summary>
public sealed class DeploymentValidationTests
{
    private static readonly string Script = Path.Combine(Repo.Root, "compose", "validate.sh");

    [Fact]
    public void The_repositorys_compose_k8s_and_dockerfiles_are_valid()
    {
        var (code, stdout, stderr) = Validate(Repo.Root);
        Assert.True(code == 0, $"compose/validate.sh exited {code}:\n{stdout}\n{stderr}");
        Assert.Contains("validate: compose, 2 rendered kustomization(s), 2 Dockerfile(s): valid", stdout);
    }

    [Fact]
    public void Each_mistake_in_a_copy_is_named_and_fails_the_check()
    {
        using var copy = new DeploymentCopy();
        var expected = new List<string>();
        void Break(string file, string original, string broken, string named)
        {
            copy.Replace(file, original, broken);
            expected.Add(named);
        }

        // Compose: a misspelt key (schema), a dependency on no service, a build target no Dockerfile stage has.
        Break("compose/docker-compose.yml", "  redis:\n    image: redis:7.2-alpine\n", "  redis:\n    image: redis:7.2-alpine\n    restrat: always\n",
            "INVALID compose/docker-compose.yml: compose schema: /services/redis must NOT have additional properties 'restrat'");
        Break("compose/docker-compose.yml", "      prometheus: { condition: service_healthy }", "      prometheos: { condition: service_healthy }",
            "INVALID compose/docker-compose.yml: services.grafana.depends_on: no service 'prometheos'");
        Break("compose/docker-compose.yml", "      target: gpu\n", "      target: cuda\n",
            "INVALID compose/docker-compose.yml: services.forecaster-gpu.build.target: no stage 'cuda' in processors/Host/Dockerfile");
        // Kubernetes: a Deployment field of the wrong type, a misspelt field, an API version that no longer exists, a kind that
        // does not exist, a bad GPU quantity in the optional patch (only its rendering has it).
        Break("k8s/gateway.yaml", "containerPort: 8080", "containerPort: http-8080",
            "INVALID k8s (kubectl kustomize): Deployment gateway: data/spec/template/spec/containers/0/ports/0/containerPort must be integer");
        Break("k8s/forecaster.yaml", "terminationGracePeriodSeconds: 30\n", "terminationGracePeriodSecond: 30\n",
            "INVALID k8s (kubectl kustomize): Deployment forecaster: unknown field spec.template.spec.terminationGracePeriodSecond");
        Break("k8s/processors.yaml", "apiVersion: policy/v1\n", "apiVersion: policy/v1beta1\n",
            "INVALID k8s (kubectl kustomize): PodDisruptionBudget processors: policy/v1beta1 was removed in Kubernetes 1.25");
        Break("k8s/processors.yaml", "kind: NetworkPolicy\n", "kind: NetworkPolicies\n",
            "INVALID k8s (kubectl kustomize): NetworkPolicies processors-queries: no Kubernetes schema for networking.k8s.io/v1 NetworkPolicies");
        Break("k8s/optional/forecaster-gpu.yaml", "nvidia.com/gpu: 1 }", "nvidia.com/gpu: one }",
            "INVALID k8s-optional-forecaster-gpu (kubectl kustomize): Deployment forecaster: data/spec/template/spec/containers/0/resources/limits/nvidia.com~1gpu must be number");
        // Dockerfiles: the linter's error, root at run time, an image stage without a HEALTHCHECK.
        Break("processors/Host/Dockerfile", "EXPOSE 7071\n", "EXPOSE queries\n",
            "INVALID processors/Host/Dockerfile: dockerfile-utils: Line: ");
        Break("gateway/Dockerfile", "USER 1654\n", "USER root\n",
            "INVALID gateway/Dockerfile: stage 'FROM mcr.microsoft.com/dotnet/aspnet:10.0-noble AS runtime': runs as root");
        Break("processors/Host/Dockerfile", "HEALTHCHECK NONE\n", "\n",
            "INVALID processors/Host/Dockerfile: stage 'FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 AS gpu': no HEALTHCHECK");

        var (code, stdout, stderr) = Validate(copy.Root);
        Assert.True(code == 1, $"compose/validate.sh exited {code}, expected 1:\n{stdout}\n{stderr}");
        foreach (var line in expected) Assert.Contains(line, stdout);
        Assert.Contains("nvidia.com~1gpu must match format \"quantity\"", stdout);
        Assert.Contains("Invalid containerPort: queries", stdout);
        Assert.DoesNotContain(": valid", stdout);
    }

    [Fact]
    public void A_kustomization_that_does_not_render_is_named()
    {
        using var copy = new DeploymentCopy();
        copy.Replace("k8s/kustomization.yaml", "  - gateway.yaml\n", "  - gateway.yaml\n  - ingress.yaml\n");

        var (code, stdout, stderr) = Validate(copy.Root);
        Assert.True(code == 1, $"compose/validate.sh exited {code}, expected 1:\n{stdout}\n{stderr}");
        Assert.Contains("INVALID k8s: kubectl kustomize: ", stdout);
        Assert.Contains("ingress.yaml", stdout);
    }

    private static (int Code, string StdOut, string StdErr) Validate(string root) =>
        // A guard against a hung child only (the check takes a few seconds); nothing here measures time.
        Repo.Run("bash", [Script, root], timeoutMs: 300_000);

    /// <summary>compose/, k8s/ and the Dockerfiles copied to a temporary tree, to be broken without touching the checkout.</summary>
    private sealed class DeploymentCopy : IDisposable
    {
        public string Root { get; } = Directory.CreateTempSubdirectory("streamhealth-deploy-").FullName;

        public DeploymentCopy()
        {
            CopyDirectory("compose");
            CopyDirectory("k8s");
            foreach (var file in new[] { "processors/Host/Dockerfile", "gateway/Dockerfile" })
            {
                Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(Root, file))!);
                File.Copy(Path.Combine(Repo.Root, file), Path.Combine(Root, file));
            }
        }

        /// <summary>Replaces text that occurs exactly once, so a mistake is never silently not made.</summary>
        public void Replace(string file, string original, string broken)
        {
            var path = Path.Combine(Root, file);
            var text = File.ReadAllText(path);
            var first = text.IndexOf(original, StringComparison.Ordinal);
            Assert.True(first >= 0 && text.IndexOf(original, first + 1, StringComparison.Ordinal) < 0,
                $"{file}: '{original}' must occur exactly once to be broken");
            File.WriteAllText(path, text.Replace(original, broken, StringComparison.Ordinal));
        }

        private void CopyDirectory(string relative)
        {
            var source = Path.Combine(Repo.Root, relative);
            foreach (var file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
            {
                var target = Path.Combine(Root, relative, Path.GetRelativePath(source, file));
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                File.Copy(file, target);
            }
        }

        public void Dispose() => Directory.Delete(Root, recursive: true);
    }
}
