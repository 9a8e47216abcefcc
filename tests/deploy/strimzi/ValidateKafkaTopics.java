// Strict check of Strimzi KafkaTopic objects through Strimzi's own model classes (io.strimzi:api):
// reads a JSON array of objects (file given as the argument), deserialises each into
// io.strimzi.api.kafka.model.topic.KafkaTopic, rejects any property the model does not know
// (Strimzi keeps those aside as "additional properties" instead of failing), checks apiVersion,
// kind and the spec's bounds, and requires the object to serialise back to the same JSON (so no
// value was coerced, e.g. a partition count given as a string). Prints one line per problem;
// exit status 1 when there is any. Run: java -cp <classpath> ValidateKafkaTopics.java FILE
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.strimzi.api.kafka.model.topic.KafkaTopic;
import io.strimzi.api.kafka.model.topic.KafkaTopicSpec;
import java.io.File;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

public class ValidateKafkaTopics {
    public static void main(String[] args) throws Exception {
        ObjectMapper mapper = new ObjectMapper()
                .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
                .disable(SerializationFeature.FAIL_ON_EMPTY_BEANS);
        JsonNode objects = mapper.readTree(new File(args[0]));
        List<String> problems = new ArrayList<>();
        int index = 0;
        for (JsonNode node : objects) {
            String where = "object " + index++ + " (" + node.path("metadata").path("name").asText() + ")";
            try {
                check(mapper, node, where, problems);
            } catch (Exception e) {
                problems.add(where + ": does not deserialise: " + e.getMessage().split("\n")[0]);
            }
        }
        for (String problem : problems) {
            System.out.println(problem);
        }
        System.out.println("checked " + index + " KafkaTopic objects, " + problems.size() + " problems");
        System.exit(problems.isEmpty() ? 0 : 1);
    }

    static void check(ObjectMapper mapper, JsonNode node, String where, List<String> problems)
            throws Exception {
        KafkaTopic topic = mapper.treeToValue(node, KafkaTopic.class);
        String group = KafkaTopic.RESOURCE_GROUP;
        List<String> versions = KafkaTopic.VERSIONS.stream().map(v -> group + "/" + v).toList();
        // the model reports its own storage version, so the apiVersion is read from the input
        String apiVersion = node.path("apiVersion").asText();
        if (!versions.contains(apiVersion)) {
            problems.add(where + ": apiVersion " + apiVersion + " is not one of " + versions);
        }
        if (!KafkaTopic.RESOURCE_KIND.equals(topic.getKind())) {
            problems.add(where + ": kind " + topic.getKind());
        }
        unknown(where, "", topic.getAdditionalProperties(), problems);
        unknown(where, "metadata.", topic.getMetadata().getAdditionalProperties(), problems);
        KafkaTopicSpec spec = topic.getSpec();
        if (spec == null) {
            problems.add(where + ": no spec");
            return;
        }
        unknown(where, "spec.", spec.getAdditionalProperties(), problems);
        if (spec.getPartitions() != null && spec.getPartitions() < 1) {
            problems.add(where + ": spec.partitions < 1");
        }
        if (spec.getReplicas() != null && spec.getReplicas() < 1) {
            problems.add(where + ": spec.replicas < 1");
        }
        if (topic.getMetadata().getName() == null || topic.getMetadata().getLabels() == null
                || !topic.getMetadata().getLabels().containsKey("strimzi.io/cluster")) {
            problems.add(where + ": metadata.name and the strimzi.io/cluster label are required");
        }
        JsonNode back = mapper.valueToTree(topic);
        ((ObjectNode) back).remove("status");
        ((ObjectNode) back).put("apiVersion", apiVersion);
        if (!back.equals(node)) {
            problems.add(where + ": does not round-trip: " + back + " != " + node);
        }
    }

    static void unknown(String where, String path, Map<String, Object> extra, List<String> problems) {
        if (extra != null && !extra.isEmpty()) {
            problems.add(where + ": unknown properties: " + path + extra.keySet());
        }
    }
}
